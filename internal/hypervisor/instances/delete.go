package instances

import (
	"context"
	"fmt"
)

// Delete removes an instance in any state: stop the VMM (by force if it hangs), remove every file
// and the name. Deleting an instance that does not exist is ErrNotFound.
func (m *Manager) Delete(ctx context.Context, idOrName string) error {
	id, err := m.resolve(ctx, idOrName)
	if err != nil {
		return err
	}
	return m.withLock(ctx, id, func() error {
		md, err := m.loadMetadata(ctx, id)
		if err != nil {
			return err
		}
		if err := m.quitVMM(ctx, md); err != nil {
			return fmt.Errorf("delete %s: stop the VMM: %w", md.Name, err)
		}
		if err := m.host.RemoveAll(ctx, m.layout.dir(id)); err != nil {
			return fmt.Errorf("delete %s: remove its files: %w", md.Name, err)
		}
		// Released only once the files are gone, so a half-deleted instance keeps its address.
		if err := m.releaseLease(ctx, md); err != nil {
			return fmt.Errorf("delete %s: release its network address: %w", md.Name, err)
		}
		if err := m.releaseName(ctx, md.Name, id); err != nil {
			return fmt.Errorf("delete %s: release its name: %w", md.Name, err)
		}
		m.log(ctx, "deleted", map[string]any{"id": id, "name": md.Name})
		return nil
	})
}
