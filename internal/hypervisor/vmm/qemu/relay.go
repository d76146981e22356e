package qemu

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// A snapshot's migration stream passes a unix socket in the instance directory: QEMU's sandbox
// lets it spawn no exec: command, and a descriptor handed over QMP (getfd) does not cross an SSH
// connection. The other end is a relay on the host, socat, run for the stream's length:
//
//	snapshot  the relay listens, QEMU's migrate connects: socket → [lz4] → memory image
//	restore   QEMU's migrate-incoming listens, the relay connects: memory image → [lz4 -d] → socket
//
// socat holds the socket's end as the VMM user, so that it is that user's socket in that user's
// directory, and nothing running as the host's own user follows a name there that the VMM could
// have changed; the memory image is read and written by the host's own user.

// migrationSocket is the stream's socket in the instance directory; as long as qmp.sock, so a
// directory that QMP's socket fits in fits it too.
const migrationSocket = "mig.sock"

// Relay is the tool that holds the host's end of the migration socket.
const Relay = "socat"

// relayBuffer is socat's read size. 64 KiB (a pipe's worth) made a standby of a 2 GiB guest take
// 2.5 times as long as 1 MiB does (BenchmarkSnapshotStream).
const relayBuffer = 1 << 20

// receiveScript writes the stream arriving on the socket to $2, a new private file, through the
// filter "$@" (none: as it is), and renames it to $6 once written: the rename is the relay's, so
// that a stream whose caller died still ends in place. $1 is the instance directory, $3 and $4
// the VMM user's uid and gid ("": the host's own user), $5 socat's buffer size.
const receiveScript = `umask 077 && cd "$1" || exit 1
out=$2 as= mem=$6
[ -z "$3" ] || as="setpriv --reuid=$3 --regid=$4 --clear-groups --no-new-privs --"
b=$5; shift 6
if [ $# -eq 0 ]; then
	$as socat -u -b "$b" UNIX-LISTEN:mig.sock,unlink-early - >"$out" && mv -- "$out" "$mem"
else
	$as socat -u -b "$b" UNIX-LISTEN:mig.sock,unlink-early - | "$@" >"$out" && mv -- "$out" "$mem"
fi
`

// sendScript sends $2 to the socket through the filter "$@" (none: as it is); the other arguments
// are receiveScript's ($6 unused).
const sendScript = `cd "$1" || exit 1
in=$2 as=
[ -z "$3" ] || as="setpriv --reuid=$3 --regid=$4 --clear-groups --no-new-privs --"
b=$5; shift 6
if [ $# -eq 0 ]; then
	$as socat -u -b "$b" - UNIX-CONNECT:mig.sock <"$in"
else
	"$@" <"$in" | $as socat -u -b "$b" - UNIX-CONNECT:mig.sock
fi
`

// relay is one run of receiveScript or sendScript on the host.
type relay struct {
	h    host.Host
	dir  string
	done chan struct{}
	err  error
}

// startRelay runs script for the stream of file (renamed to final once written, for a receiving
// relay) through filter, as id, in the background.
func startRelay(ctx context.Context, h host.Host, cfg vmm.Config, id identity, script, file, final string, filter []string) (*relay, error) {
	if _, err := h.LookPath(ctx, Relay); err != nil {
		return nil, fmt.Errorf("the snapshot's stream passes %s, which is not installed on the host (install socat): %w", Relay, err)
	}
	uid, gid := "", ""
	if id.switches() {
		uid, gid = strconv.Itoa(id.uid), strconv.Itoa(id.gid)
	}
	argv := append([]string{"sh", "-c", script, "qemu-relay", cfg.Dir, file, uid, gid, strconv.Itoa(relayBuffer), final}, filter...)
	r := &relay{h: h, dir: cfg.Dir, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_, r.err = h.Run(ctx, nil, argv...)
	}()
	return r, nil
}

// failed is a context that ends a while after the relay failed: a wait for QEMU that the relay's
// end would leave waiting forever (QEMU never connected) ends with it, and QEMU still has a
// moment to say what it saw of a stream that broke off.
func (r *relay) failed(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-r.done:
		case <-ctx.Done():
			return
		}
		if r.err == nil {
			return
		}
		t := time.NewTimer(commandEndTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel(fmt.Errorf("the snapshot's relay (%s) failed: %w", Relay, r.err))
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(nil) }
}

// listening waits until a receiving relay listens on the socket.
func (r *relay) listening(ctx context.Context) error {
	err := poll.Within(ctx, relayTimeout, pollInterval, func(ctx context.Context) (bool, error) {
		select {
		case <-r.done:
			return false, fmt.Errorf("the snapshot's relay (%s) ended before it listened: %w", Relay, r.err)
		default:
		}
		_, err := r.h.Stat(ctx, path.Join(r.dir, migrationSocket))
		return err == nil, nil
	})
	if poll.Stopped(err) {
		return fmt.Errorf("the snapshot's relay (%s) did not listen on %s: %w", Relay, path.Join(r.dir, migrationSocket), err)
	}
	return err
}

// wait waits for the relay to end, within timeout, and returns how it ended.
func (r *relay) wait(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.done:
		if r.err != nil {
			return fmt.Errorf("the snapshot's relay (%s): %w", Relay, r.err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("the snapshot's relay (%s) did not end within %s of the stream", Relay, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// abandon ends a receiving relay that QEMU never connected to (a connection that closes at once
// is an empty stream for it) and waits for it, briefly.
func (r *relay) abandon(ctx context.Context) {
	select {
	case <-r.done:
		return
	default:
	}
	if c, err := r.h.DialUnix(ctx, path.Join(r.dir, migrationSocket)); err == nil {
		_ = c.Close()
	}
	_ = r.wait(ctx, commandEndTimeout)
}

// relayTimeout bounds the wait for a relay to listen.
const relayTimeout = 10 * time.Second

func migrationPath(cfg vmm.Config) string { return path.Join(cfg.Dir, migrationSocket) }
