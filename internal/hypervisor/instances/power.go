package instances

import (
	"context"
	"fmt"
)

// pause pauses a running guest.
func (m *Manager) pause(ctx context.Context, md *metadata) error {
	vm, err := m.connect(ctx, md)
	if err != nil {
		return err
	}
	defer vm.Close()
	if err := vm.Pause(ctx); err != nil {
		return fmt.Errorf("pause %s: %w", md.Name, err)
	}
	return nil
}

// resume resumes a paused guest. A snapshot left from a restore is dropped now that the guest
// runs again: from here on it would be stale.
func (m *Manager) resume(ctx context.Context, md *metadata) error {
	vm, err := m.connect(ctx, md)
	if err != nil {
		return err
	}
	defer vm.Close()
	if err := vm.Resume(ctx); err != nil {
		return fmt.Errorf("resume %s: %w", md.Name, err)
	}
	if err := m.host.RemoveAll(ctx, m.layout.snapshots(md.ID)); err != nil {
		return fmt.Errorf("drop the restored snapshot of %s: %w", md.Name, err)
	}
	m.growMemory(ctx, md)
	return nil
}
