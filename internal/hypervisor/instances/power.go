package instances

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// pause pauses a running guest.
func (m *Manager) pause(ctx context.Context, md *metadata) error {
	vm, err := m.connect(ctx, md)
	if err != nil {
		return err
	}
	defer func() { _ = vm.Close() }()
	if err := vm.Pause(ctx); err != nil {
		return fmt.Errorf("pause %s: %w", md.Name, err)
	}
	return nil
}

// resume resumes a paused guest. A snapshot left from a restore is dropped now that the guest
// runs again: from here on it would be stale. A guest that a full disk stopped is only resumed
// when there is room again, and must stay running; otherwise it stays Paused, its writes kept.
func (m *Manager) resume(ctx context.Context, md *metadata) error {
	vm, err := m.connect(ctx, md)
	if err != nil {
		return err
	}
	defer func() { _ = vm.Close() }()
	stalled, err := diskError(ctx, vm)
	if err != nil {
		return fmt.Errorf("resume %s: %w", md.Name, err)
	}
	if stalled != nil {
		if err := m.checkResumeRoom(ctx, md, stalled); err != nil {
			return err
		}
	}
	if err := vm.Resume(ctx); err != nil {
		return fmt.Errorf("resume %s: %w", md.Name, err)
	}
	if stalled != nil {
		if err := m.watchResumed(ctx, md, vm); err != nil {
			return err
		}
	}
	if err := m.host.RemoveAll(ctx, m.layout.snapshots(md.ID)); err != nil {
		return fmt.Errorf("drop the restored snapshot of %s: %w", md.Name, err)
	}
	m.giveLiveSizes(ctx, md)
	return nil
}

// diskError is the failed disk write that made the VMM pause the guest by itself; nil when it did
// not, or cannot (vmm.DiskErrorReporter).
func diskError(ctx context.Context, vm vmm.VM) (*vmm.DiskError, error) {
	r, ok := vm.(vmm.DiskErrorReporter)
	if !ok {
		return nil, nil
	}
	return r.DiskError(ctx)
}

// resumeWatch is how long a guest that a full disk stopped is watched after it was resumed: its
// first retried write stops it again at once if the room is still too small.
const resumeWatch = time.Second

// watchResumed fails when the guest, just resumed after a full disk stopped it, is stopped again.
func (m *Manager) watchResumed(ctx context.Context, md *metadata, vm vmm.VM) error {
	var again *vmm.DiskError
	err := poll.Within(ctx, resumeWatch, 100*time.Millisecond, poll.IgnoreErrors(func(ctx context.Context) (bool, error) {
		var err error
		again, err = diskError(ctx, vm)
		return again != nil, err
	}))
	switch {
	case again != nil && again.NoSpace && again.Path != "":
		dir := path.Dir(again.Path)
		free, _ := m.host.FreeSpace(ctx, dir)
		return stillFull(md, dir, free, " (the guest was resumed and stopped again at its next write)")
	case again != nil:
		return fmt.Errorf("resume %s: the guest was resumed and its VMM stopped it again: %s", md.Name, diskErrorReason(again))
	case errors.Is(err, poll.ErrTimeout):
		return nil // it kept running
	}
	return fmt.Errorf("resume %s: watching the resumed guest: %w", md.Name, err)
}

// pauseReason is the state_reason of a Paused guest: why its VMM paused it by itself, "" when it
// did not (or cannot say).
func pauseReason(ctx context.Context, vm vmm.VM) string {
	de, err := diskError(ctx, vm)
	if err != nil || de == nil {
		return ""
	}
	return diskErrorReason(de)
}
