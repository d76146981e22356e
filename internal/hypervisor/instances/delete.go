package instances

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// Delete removes an instance in any state: stop the VMM (by force if it hangs), remove every file
// and the name. Deleting an instance that does not exist is ErrNotFound, and so is deleting one
// that another operation is still creating (it is no instance yet); what a create that died left
// is removed like an instance. An instance whose directory was removed while its VMM ran is no
// instance either, but Delete of its id or name stops that VMM (orphans.go).
func (m *Manager) Delete(ctx context.Context, idOrName string) error {
	id, err := m.resolve(ctx, idOrName)
	if errors.Is(err, ErrNotFound) && ulidRE.MatchString(idOrName) {
		return m.deleteGone(ctx, idOrName, err)
	}
	if err != nil {
		return err
	}
	if md, err := m.loadMetadata(ctx, id); err == nil && md.Creating != nil {
		// Rather than wait for the create's lock and delete what it made.
		if md, live, err := m.settle(ctx, md); err != nil {
			return err
		} else if live {
			return fmt.Errorf("%w: instance %s (%s) is being created by another operation (%s)", ErrNotFound, md.Name, id, md.Creating)
		}
	}
	err = m.lockInstance(ctx, id, func() error {
		md, err := m.loadMetadata(ctx, id)
		if errors.Is(err, errCorruptMetadata) {
			return m.deleteDamaged(ctx, id, err)
		}
		if err != nil {
			return err
		}
		if err := m.remove(ctx, id, md); err != nil {
			return fmt.Errorf("delete %s: %w", md.Name, err)
		}
		if err := m.releaseName(ctx, md.Name, id); err != nil {
			return fmt.Errorf("delete %s: release its name: %w", md.Name, err)
		}
		m.log(ctx, "deleted", map[string]any{"id": id, "name": md.Name})
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return m.deleteGone(ctx, id, err) // a name whose instance directory was removed
	}
	return err
}

// remove stops the instance's VMM and removes its files and network address; its name is the
// caller's to release. md is nil for a directory without metadata (or none at all), whose VMM,
// if one still runs, is found by its command line like any other stray.
func (m *Manager) remove(ctx context.Context, id string, md *metadata) error {
	if md != nil {
		if err := m.quitVMM(ctx, md); err != nil {
			return fmt.Errorf("stop the VMM: %w", err)
		}
	}
	if _, err := m.stopStrays(ctx, id); err != nil {
		return err
	}
	if err := m.removeDir(ctx, id); err != nil {
		return fmt.Errorf("remove its files: %w", err)
	}
	if md != nil && len(md.Volumes) > 0 {
		m.detach(ctx, id, volumeIDs(md.Volumes)) // a record left by a crash here goes stale with the instance
	}
	// Released only once the files are gone, so a half-deleted instance keeps its address.
	var err error
	switch {
	case md != nil && md.Creating == nil:
		err = m.releaseLease(ctx, md)
	case m.net != nil:
		err = m.net.Release(ctx, id) // an unfinished create may hold a lease its metadata does not name yet
	case md != nil:
		err = m.releaseLease(ctx, md)
	}
	if err != nil {
		return fmt.Errorf("release its network address: %w", err)
	}
	return nil
}

// deleteDamaged removes an instance whose metadata cannot be read, so nothing says which VMM runs
// it: whatever VMM answers on the directory's control sockets is stopped, the files go, and the
// name and address that point at the id are freed.
func (m *Manager) deleteDamaged(ctx context.Context, id string, cause error) error {
	dir := m.layout.dir(id)
	for _, drv := range m.opts.Drivers {
		vm, err := drv.Connect(ctx, m.host, vmm.Config{Dir: dir})
		if err != nil {
			continue // nothing of this kind answers
		}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = vm.Quit(qctx)
		cancel()
		_ = vm.Close()
		if err != nil {
			return fmt.Errorf("delete %s (%v): stop its %s: %w", id, cause, drv.Name(), err)
		}
	}
	if _, err := m.stopStrays(ctx, id); err != nil { // one that did not answer on its socket
		return fmt.Errorf("delete %s (%v): %w", id, cause, err)
	}
	if err := m.host.RemoveAll(ctx, dir); err != nil {
		return fmt.Errorf("delete %s: remove its files: %w", id, err)
	}
	if m.net != nil {
		if err := m.net.Release(ctx, id); err != nil {
			return fmt.Errorf("delete %s: release its network address: %w", id, err)
		}
	}
	if err := m.releaseNamesOf(ctx, id); err != nil {
		return fmt.Errorf("delete %s: release its name: %w", id, err)
	}
	m.log(ctx, "deleted an instance with unreadable metadata", map[string]any{"id": id, "cause": cause.Error()})
	return nil
}

// releaseNamesOf frees every name that points at id, for an instance whose metadata cannot say
// which name is its own.
func (m *Manager) releaseNamesOf(ctx context.Context, id string) error {
	names, err := m.host.ReadDir(ctx, m.layout.names())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find its name: %w", err)
	}
	for _, n := range names {
		if ValidateName(n.Name()) != nil {
			continue // a name's lock
		}
		if err := m.releaseName(ctx, n.Name(), id); err != nil {
			return err
		}
	}
	return nil
}
