package host

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// keeperScript holds any number of flock(1) locks in one SSH session, so that locks held by many
// flows at once cost one of the server's MaxSessions instead of one each. It reads requests on
// standard input and answers on standard output, one line each:
//
//	L id path   lock path      → P id pid (flock's pid), then A id pid (the holder's pid) once
//	                             held, and E id status when flock ends (an error if not yet held)
//	K pid...    kill: releases a held lock (holder pid) or gives up waiting (flock pid)
//
// flock -o keeps the lock in the flock process alone, so killing it releases the lock at once.
// When standard input ends (the client let go, or the connection died) the script kills its
// whole process group, which releases every lock it held.
const keeperScript = `umask 077
trap 'trap - TERM; kill 0' EXIT
trap 'exit 1' HUP INT TERM
while IFS= read -r line; do
	case $line in
	"L "*)
		rest=${line#L }
		id=${rest%% *}
		p=${rest#* }
		(
			flock -x -o -- "$p" sh -c 'echo "A $0 $$"; exec sleep 2147483647' "$id" &
			echo "P $id $!"
			wait $!
			echo "E $id $?"
		) &
		;;
	"K "*)
		pids=${line#K }
		case $pids in *[!0-9\ ]*) continue ;; esac
		kill $pids 2>/dev/null
		;;
	esac
done
`

// releaseTimeout bounds the wait for a released lock's flock to end.
const releaseTimeout = 10 * time.Second

// lockKeeper is the client side of keeperScript on one connection.
type lockKeeper struct {
	sess  *ssh.Session
	stdin io.WriteCloser

	mu     sync.Mutex
	nextID int
	reqs   map[int]*lockRequest
	stderr tailBuffer

	done chan struct{} // closed when the script's output has ended
}

type lockRequest struct {
	path     string
	flockPID int
	holder   int
	status   int
	held     chan struct{} // closed on "A"
	ended    chan struct{} // closed on "E"
	released bool          // the caller unlocked or gave up; pids that show up later are killed
}

func startLockKeeper(client *ssh.Client) (*lockKeeper, error) {
	sess, err := client.NewSession()
	if err != nil {
		return nil, err
	}
	k := &lockKeeper{sess: sess, reqs: map[int]*lockRequest{}, done: make(chan struct{})}
	sess.Stderr = &k.stderr
	if k.stdin, err = sess.StdinPipe(); err != nil {
		_ = sess.Close()
		return nil, err
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		_ = sess.Close()
		return nil, err
	}
	if err := sess.Start(shellJoin([]string{"sh", "-c", keeperScript})); err != nil {
		_ = sess.Close()
		return nil, err
	}
	go k.read(stdout)
	return k, nil
}

func (k *lockKeeper) read(stdout io.Reader) {
	defer close(k.done)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue
		}
		id, err1 := strconv.Atoi(f[1])
		n, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			continue
		}
		k.mu.Lock()
		r := k.reqs[id]
		if r == nil {
			k.mu.Unlock()
			continue
		}
		switch f[0] {
		case "P":
			r.flockPID = n
			if r.released {
				k.kill(n)
			}
		case "A":
			r.holder = n
			if r.released {
				k.kill(n)
			} else {
				close(r.held)
			}
		case "E":
			r.status = n
			delete(k.reqs, id)
			close(r.ended)
		}
		k.mu.Unlock()
	}
}

// kill asks the script to kill pids. The caller holds k.mu, which also orders the writes.
func (k *lockKeeper) kill(pids ...int) {
	var b strings.Builder
	b.WriteString("K")
	for _, p := range pids {
		if p > 0 {
			b.WriteString(" " + strconv.Itoa(p))
		}
	}
	if b.Len() > 1 {
		_, _ = io.WriteString(k.stdin, b.String()+"\n")
	}
}

// lock waits until path is locked, ctx is done or the connection ends.
func (k *lockKeeper) lock(ctx context.Context, path string) (func(), error) {
	k.mu.Lock()
	k.nextID++
	id := k.nextID
	r := &lockRequest{path: path, held: make(chan struct{}), ended: make(chan struct{})}
	k.reqs[id] = r
	_, err := fmt.Fprintf(k.stdin, "L %d %s\n", id, path)
	k.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// release returns once flock has ended, so that the lock is free when unlock returns, as
	// it is on the local host.
	release := func() {
		k.mu.Lock()
		if !r.released {
			r.released = true
			k.kill(r.holder, r.flockPID)
		}
		k.mu.Unlock()
		select {
		case <-r.ended:
		case <-k.done:
		case <-time.After(releaseTimeout):
		}
	}
	select {
	case <-r.held:
		var once sync.Once
		return func() { once.Do(release) }, nil
	case <-r.ended:
		return nil, fmt.Errorf("lock %s: flock exited with status %d: %s", path, r.status, k.stderr.about(path))
	case <-k.done:
		return nil, fmt.Errorf("lock %s: %w: the session holding locks ended", path, io.EOF)
	case <-ctx.Done():
		release()
		return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
	}
}

// close ends the session, which releases every lock it holds.
func (k *lockKeeper) close() {
	_ = k.stdin.Close()
	_ = k.sess.Close()
}

// tailBuffer keeps the last lines written to it, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

// about is the last line that mentions s, or the last lines when none does.
func (t *tailBuffer) about(s string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return lastLines(strings.Join(lines, "\n"), 5)
}

func (s *SSH) Lock(ctx context.Context, p string) (func(), error) {
	if strings.ContainsAny(p, "\n\x00") {
		return nil, fmt.Errorf("lock %q: a lock path cannot contain a newline or NUL", p)
	}
	local, err := s.c.locks.lock(ctx, p)
	if err != nil {
		return nil, err
	}
	var remote func()
	err = s.call(ctx, true, func(g *generation) error {
		k, err := g.lockKeeper()
		if err != nil {
			return err
		}
		remote, err = k.lock(ctx, p)
		if err != nil && ctx.Err() == nil && !g.lost(err) {
			if _, serr := g.sftp.Stat(path.Dir(p)); errors.Is(serr, fs.ErrNotExist) {
				return &fs.PathError{Op: "lock", Path: p, Err: fs.ErrNotExist}
			}
		}
		return err
	})
	if err != nil {
		local()
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { remote(); local() }) }, nil
}
