package instances

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
)

// reserveName claims name for id atomically: names/{name} is a symlink to the id, and creating a
// symlink fails when it exists.
func (m *Manager) reserveName(ctx context.Context, name, id string) error {
	err := m.host.Symlink(ctx, id, m.layout.name(name))
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	owner, rerr := m.host.Readlink(ctx, m.layout.name(name))
	if rerr == nil {
		if _, serr := m.host.Stat(ctx, m.layout.metadata(owner)); errors.Is(serr, fs.ErrNotExist) {
			// The owner's files are gone (removed behind the manager's back): the name is free.
			m.log(ctx, "releasing a name whose instance is gone", map[string]any{"name": name, "stale_id": owner})
			if err := m.releaseName(ctx, name, owner); err != nil {
				return err
			}
			return m.host.Symlink(ctx, id, m.layout.name(name))
		}
	}
	return fmt.Errorf("%w: %q belongs to instance %s", ErrNameTaken, name, owner)
}

// releaseName frees name, but only while it still points at id.
func (m *Manager) releaseName(ctx context.Context, name, id string) error {
	owner, err := m.host.Readlink(ctx, m.layout.name(name))
	if errors.Is(err, fs.ErrNotExist) || (err == nil && owner != id) {
		return nil
	}
	if err != nil {
		return err
	}
	return m.host.Remove(ctx, m.layout.name(name))
}
