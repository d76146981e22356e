package instances

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
)

// Names. names/{name} is a symlink to the instance's id: creating a symlink fails when it
// exists, so exactly one create takes a name. A link to an id is made once, by that id's create,
// after the instance's directory, lock and metadata exist; it is removed only under the name's
// lock (names/.{name}.lock) after checking that it still points at that id, so a reservation
// made meanwhile by another create is never removed by mistake.

// reserveName claims name for id. The caller is id's create: it holds id's lock and has written
// its metadata with the creating mark. A name held by a create that died is reclaimed; one held
// by a live create or a finished instance is ErrNameTaken.
func (m *Manager) reserveName(ctx context.Context, name, id string) error {
	link := m.layout.name(name)
	for range 3 {
		err := m.host.Symlink(ctx, id, link)
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
		owner, err := m.host.Readlink(ctx, link)
		if errors.Is(err, fs.ErrNotExist) {
			continue // released meanwhile
		}
		if err != nil {
			return fmt.Errorf("read the reservation of %q: %w", name, err)
		}
		if err := m.reclaimName(ctx, name, owner); err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: name %q is being created by another operation", ErrNameBeingCreated, name)
}

// NameHolder tells, changing nothing, whether a create could take name: "" and nil when it is
// free or held by what a dead create left (a create reclaims it); else the holder's id, with
// ErrNameBeingCreated while another operation creates it, or ErrNameTaken.
func (m *Manager) NameHolder(ctx context.Context, name string) (string, error) {
	owner, err := m.host.Readlink(ctx, m.layout.name(name))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the reservation of %q: %w", name, err)
	}
	md, err := m.loadMetadata(ctx, owner)
	if err := holdStands(name, owner, md, err); err != nil {
		return owner, err
	}
	unlock, err := m.tryLock(ctx, owner)
	switch {
	case errors.Is(err, errBusy):
		return owner, errNameBeingCreated(name, owner, md)
	case errors.Is(err, ErrNotFound):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("check the reservation of %q by instance %s: %w", name, owner, err)
	}
	defer unlock()
	md, err = m.loadMetadata(ctx, owner) // again, now that nothing can change it
	if err := holdStands(name, owner, md, err); err != nil {
		return owner, err
	}
	return "", nil
}

// holdStands says whether owner's hold on name stands, judging by owner's metadata as
// loadMetadata returned it: a finished instance's hold does, and so does one whose metadata
// cannot be read (Delete removes such an instance), both ErrNameTaken; a create known to run
// still holds it (ErrNameBeingCreated). nil leaves the verdict to owner's lock.
func holdStands(name, owner string, md *metadata, err error) error {
	switch {
	case err == nil && md.Creating == nil:
		return errNameTaken(name, owner)
	case err == nil && md.Creating.running():
		return errNameBeingCreated(name, owner, md)
	case err != nil && !errors.Is(err, ErrNotFound):
		return fmt.Errorf("%w (%v)", errNameTaken(name, owner), err)
	}
	return nil
}

func errNameTaken(name, owner string) error {
	return fmt.Errorf("%w: name %q is taken by instance %s", ErrNameTaken, name, owner)
}

func errNameBeingCreated(name, owner string, md *metadata) error {
	if md == nil || md.Creating == nil {
		return fmt.Errorf("%w: name %q is being created by another operation (instance %s)", ErrNameBeingCreated, name, owner)
	}
	return fmt.Errorf("%w: name %q is being created by another operation (instance %s, %s)", ErrNameBeingCreated, name, owner, md.Creating)
}

// reclaimName frees name from owner when owner is what a dead create left, and returns nil so
// that the caller tries again; anything else is an error saying who has the name. An instance
// whose create finished is never reclaimed, whatever its state.
func (m *Manager) reclaimName(ctx context.Context, name, owner string) error {
	md, err := m.loadMetadata(ctx, owner)
	if err := holdStands(name, owner, md, err); err != nil {
		return err
	}
	// An unfinished create, or no metadata at all: its lock decides. The name's lock comes first,
	// so that of two creates that find the same dead reservation one reclaims it while the other
	// waits, and then sees who took the name, rather than the reclaimer's hold on the dead
	// create's lock.
	unlockName, err := m.lockName(ctx, name)
	if err != nil {
		return err
	}
	defer unlockName()
	if cur, err := m.host.Readlink(ctx, m.layout.name(name)); errors.Is(err, fs.ErrNotExist) || (err == nil && cur != owner) {
		return nil // released meanwhile
	} else if err != nil {
		return err
	}
	unlock, err := m.tryLock(ctx, owner)
	switch {
	case errors.Is(err, errBusy):
		return errNameBeingCreated(name, owner, md)
	case errors.Is(err, ErrNotFound):
		unlock = func() {} // the directory is gone: nothing is left to lock
	case err != nil:
		return fmt.Errorf("check the reservation of %q by instance %s: %w", name, owner, err)
	}
	defer unlock()
	md, err = m.loadMetadata(ctx, owner) // again, now that nothing can change it
	if err := holdStands(name, owner, md, err); err != nil {
		return err
	}
	if err != nil {
		md = nil // a directory without metadata never started a VMM: metadata comes first
	}
	if md == nil {
		m.log(ctx, "releasing a name whose instance is gone or has no metadata", map[string]any{"name": name, "stale_id": owner})
	} else {
		m.log(ctx, "reclaiming the name of an interrupted create", map[string]any{"name": name, "stale_id": owner, "creator": md.Creating.String()})
	}
	if err := m.remove(ctx, owner, md); err != nil {
		return fmt.Errorf("reclaim %q from the interrupted create of instance %s: %w", name, owner, err)
	}
	return m.unlinkName(ctx, name, owner)
}

// releaseName frees name, but only while it still points at id.
func (m *Manager) releaseName(ctx context.Context, name, id string) error {
	owner, err := m.host.Readlink(ctx, m.layout.name(name))
	if errors.Is(err, fs.ErrNotExist) || (err == nil && owner != id) {
		return nil // a link to id is made once, so it cannot come back
	}
	unlock, err := m.lockName(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	return m.unlinkName(ctx, name, id)
}

// unlinkName removes names/{name} if it points at id. The caller holds the name's lock.
func (m *Manager) unlinkName(ctx context.Context, name, id string) error {
	owner, err := m.host.Readlink(ctx, m.layout.name(name))
	if errors.Is(err, fs.ErrNotExist) || (err == nil && owner != id) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := m.host.Remove(ctx, m.layout.name(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// lockName takes the lock under which names/{name} is checked and removed.
func (m *Manager) lockName(ctx context.Context, name string) (func(), error) {
	unlock, err := m.host.Lock(ctx, m.layout.nameLock(name))
	if err != nil {
		return nil, fmt.Errorf("lock the name %q: %w", name, err)
	}
	return unlock, nil
}
