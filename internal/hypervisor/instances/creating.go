package instances

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// An unfinished create. A create makes the instance's directory, takes its lock and writes its
// metadata marked "creating" before it reserves the name, and keeps the lock until it returns;
// the mark goes in the last metadata write of a create that succeeded. So another operation
// that finds the mark tells a live create from a dead one by the lock: held means the create is
// still running; free means it ended without finishing (the process was killed, or its undo
// failed), unless the process identity in the mark shows that the creating process still runs
// on this machine. That second check covers a lock held over SSH, which the host releases when
// the connection drops even though the process goes on.

// creatorWait is how long an operation tries for the lock of an unfinished create before it
// takes the create to be alive. It only ever errs towards "alive", so it is generous enough for
// an SSH round trip.
const creatorWait = time.Second

// errBusy: another operation holds the instance's lock.
var errBusy = errors.New("instance busy")

// creator identifies the process running a create. The process is the provider's, on the
// machine the provider runs on, which need not be the host.
type creator struct {
	PID      int    `json:"pid"`
	Hostname string `json:"hostname,omitempty"`
	// BootID is the provider machine's /proc/sys/kernel/random/boot_id; with ProcessStart (the
	// start time in /proc/PID/stat) it tells the creating process from a later one with its pid.
	BootID       string    `json:"boot_id,omitempty"`
	ProcessStart uint64    `json:"process_start,omitempty"`
	Since        time.Time `json:"since"`
}

// thisProcess is the identity of the running process, read once.
var thisProcess = sync.OnceValue(func() creator {
	c := creator{PID: os.Getpid()}
	c.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		c.BootID = strings.TrimSpace(string(b))
	}
	c.ProcessStart, _ = processStart(c.PID)
	return c
})

// newCreator is the mark of a create run by this process, starting now.
func newCreator() *creator {
	c := thisProcess()
	c.Since = time.Now().UTC().Truncate(time.Second)
	return &c
}

func (c *creator) String() string {
	s := "pid " + strconv.Itoa(c.PID)
	if c.Hostname != "" {
		s += " on " + c.Hostname
	}
	return s + ", since " + c.Since.Format(time.RFC3339)
}

// running reports whether the creating process is known to run still: another live process of
// this machine (same boot) that started when the creating one did. Anywhere else, and for this
// very process, nothing is known beyond the lock, which then decides alone.
func (c *creator) running() bool {
	self := thisProcess()
	if c.BootID == "" || c.BootID != self.BootID || c.ProcessStart == 0 || c.PID == self.PID {
		return false
	}
	start, ok := processStart(c.PID)
	return ok && start == c.ProcessStart
}

// processStart is the start time of a live (not zombie) process, in clock ticks after boot.
func processStart(pid int) (uint64, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The fields after the parenthesised command name, which may itself contain spaces: the
	// state is the first, the start time the twentieth.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	return start, err == nil
}

// tryLock takes the instance's lock unless another operation holds it for longer than
// creatorWait (errBusy). A directory that is gone is ErrNotFound.
func (m *Manager) tryLock(ctx context.Context, id string) (func(), error) {
	lctx, cancel := context.WithTimeout(ctx, creatorWait)
	defer cancel()
	unlock, err := m.host.Lock(lctx, m.layout.lock(id))
	switch {
	case err == nil:
		return unlock, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: no instance with id %s", ErrNotFound, id)
	case ctx.Err() == nil && lctx.Err() != nil:
		return nil, errBusy
	}
	return nil, err
}

// settle looks at an instance whose metadata carries the creating mark: live is true while its
// create runs. The metadata returned is read again once that is known, so a create that
// finished meanwhile comes back without the mark. ErrNotFound: it is gone.
func (m *Manager) settle(ctx context.Context, md *metadata) (_ *metadata, live bool, err error) {
	unlock, err := m.tryLock(ctx, md.ID)
	if errors.Is(err, errBusy) {
		return md, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	if md, err = m.loadMetadata(ctx, md.ID); err != nil {
		return nil, false, err
	}
	return md, md.Creating != nil && md.Creating.running(), nil
}

// errUnfinished refuses a flow on an instance whose create did not finish. The caller holds the
// instance's lock, so its create no longer does.
func errUnfinished(md *metadata) error {
	if md.Creating.running() {
		return fmt.Errorf("%w: instance %s (%s) is still being created by another operation (%s)", ErrInvalidState, md.Name, md.ID, md.Creating)
	}
	return fmt.Errorf("%w: instance %s (%s) %s", ErrInvalidState, md.Name, md.ID, interrupted(md))
}

// interrupted says what an instance whose create died is, and what to do about it.
func interrupted(md *metadata) string {
	return fmt.Sprintf("was never completely created: its create (%s) was interrupted; delete it, or create %s again to replace it", md.Creating, md.Name)
}
