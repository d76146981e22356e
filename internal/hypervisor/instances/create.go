package instances

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
)

// cleanups is a stack of undo steps: a failed create runs them in reverse, so nothing it made
// (name, directory, process) stays behind.
type cleanups []func(context.Context)

func (c *cleanups) push(f func(context.Context)) { *c = append(*c, f) }

func (c cleanups) run(ctx context.Context) {
	for i := len(c) - 1; i >= 0; i-- {
		c[i](ctx)
	}
}

// Create makes a new instance from spec and brings it to target (Running when empty): pull and
// convert the image, make the overlay, boot, wait for the program to start.
func (m *Manager) Create(ctx context.Context, spec Spec, target State) (inst *Instance, err error) {
	if target == "" {
		target = Running
	}
	if _, err := Plan(Running, target); err != nil {
		return nil, err
	}
	if spec.Hypervisor == "" {
		spec.Hypervisor = m.opts.DefaultHypervisor
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if _, err := m.driver(spec.Hypervisor); err != nil {
		return nil, err
	}
	if err := m.checkWaitFor(spec); err != nil {
		return nil, err
	}
	if err := m.makeDataDir(ctx); err != nil {
		return nil, err
	}
	t0 := time.Now()
	// A failed create is undone while it still holds the instance's lock.
	var undo cleanups
	unlock := func() {}
	defer func() {
		if err != nil {
			undo.run(context.WithoutCancel(ctx))
		}
		unlock()
	}()
	md, unlock, err := m.claim(ctx, spec, &undo)
	if err != nil {
		return nil, err
	}
	if err := m.provision(ctx, md, spec, t0); err != nil {
		return nil, err
	}
	if target != Stopped { // Stopped: created, never booted; the first start builds the config disk
		booted, err := m.bootNew(ctx, md, target, &undo)
		if errors.Is(err, ErrNotReady) {
			return m.keepNotReady(ctx, md, &undo, err) // kept, Stopped, for its console (wait.go)
		}
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", spec.Name, err)
		}
		md = booted
	}
	md.Creating = nil // finished: from here on it is an instance like any other
	if err := m.saveMetadata(ctx, md); err != nil {
		return nil, err
	}
	m.log(ctx, "created", map[string]any{"id": md.ID, "name": spec.Name, "ms": time.Since(t0).Milliseconds()})
	return m.Get(ctx, md.ID)
}

// claim makes a new instance's directory, lock, metadata marked creating, name and network
// lease, in that order: the directory, its lock and the mark come before the name, so that
// whoever finds the name can tell whether this create is alive (creating.go). The lock is
// released by the returned func; what claim made is undone by undo.
func (m *Manager) claim(ctx context.Context, spec Spec, undo *cleanups) (*metadata, func(), error) {
	id := ulid.Make().String()
	for _, d := range []string{m.layout.guests(), m.layout.names()} {
		if err := m.host.MkdirAll(ctx, d, 0o700); err != nil {
			return nil, func() {}, fmt.Errorf("prepare %s: %w", d, err)
		}
	}
	unlock, err := m.makeLocked(ctx, id)
	if err != nil {
		return nil, func() {}, err
	}
	undo.push(func(ctx context.Context) { _ = m.removeDir(ctx, id) })
	md := &metadata{
		ID: id, Name: spec.Name, Image: spec.Image, VCPUs: spec.VCPUs, MaxVCPUs: spec.MaxVCPUs,
		Memory: spec.Memory, MaxMemory: spec.MaxMemory, Hotplug: spec.Hotplug, OverlaySize: spec.OverlaySize,
		Entrypoint: spec.Entrypoint, Cmd: spec.Cmd, Env: spec.Env, Workdir: spec.Workdir,
		Hypervisor: spec.Hypervisor, CreatedAt: time.Now().UTC(), Creating: newCreator(),
		Volumes:    spec.Volumes, // listed before any volume records the hold, so no record is ever stale while the create runs
		PeerGroups: peerGroupsOf(spec.Network),
		WaitFor:    spec.WaitFor,
	}
	if err := m.saveMetadata(ctx, md); err != nil {
		return nil, unlock, err
	}
	if err := m.reserveName(ctx, spec.Name, id); err != nil {
		return nil, unlock, err
	}
	undo.push(func(ctx context.Context) { _ = m.releaseName(ctx, spec.Name, id) })
	if len(spec.Volumes) > 0 {
		if err := m.attach(ctx, md, spec.Volumes); err != nil {
			return nil, unlock, err
		}
		undo.push(func(ctx context.Context) { m.detach(ctx, id, volumeIDs(spec.Volumes)) })
	}
	lease, err := m.allocateNetwork(ctx, id, spec.Network)
	if err != nil {
		return nil, unlock, err
	}
	if lease != nil {
		undo.push(func(ctx context.Context) { _ = m.net.Release(ctx, id) })
		md.setLease(lease)
		if err := m.saveMetadata(ctx, md); err != nil {
			return nil, unlock, err
		}
	}
	return md, unlock, nil
}

// provision pulls the image and makes the overlay of a claimed instance.
func (m *Manager) provision(ctx context.Context, md *metadata, spec Spec, t0 time.Time) error {
	img, err := m.images.Pull(ctx, spec.Image)
	if err != nil {
		return fmt.Errorf("image %s: %w", spec.Image, err)
	}
	m.log(ctx, "image ready", map[string]any{"id": md.ID, "digest": img.Digest, "ms": time.Since(t0).Milliseconds()})
	if _, err := resolveProgram(spec, img); err != nil {
		return err
	}
	t1 := time.Now()
	if err := m.makeOverlay(ctx, md.ID, spec.OverlaySize); err != nil {
		return err
	}
	m.log(ctx, "overlay ready", map[string]any{"id": md.ID, "bytes": spec.OverlaySize, "ms": time.Since(t1).Milliseconds()})
	md.ImageDigest = img.Digest
	return nil
}

// bootNew boots a provisioned instance and brings it to target, and returns its metadata as the
// hops left it. Running means the program started; whether it keeps running is its own business.
func (m *Manager) bootNew(ctx context.Context, md *metadata, target State, undo *cleanups) (*metadata, error) {
	undo.push(func(ctx context.Context) {
		cur, err := m.loadMetadata(ctx, md.ID) // the hops may have started another VMM
		if err != nil {
			cur = md
		}
		_ = m.killVMM(ctx, cur)
	})
	if err := m.start(ctx, md); err != nil {
		return nil, err
	}
	if target != Running {
		if err := m.reach(ctx, md.ID, target); err != nil {
			return nil, err
		}
	}
	return m.loadMetadata(ctx, md.ID)
}

// makeLocked makes the new instance's directory and takes its lock.
func (m *Manager) makeLocked(ctx context.Context, id string) (func(), error) {
	err := m.host.MkdirAll(ctx, m.layout.logs(id), 0o700)
	if err == nil {
		var unlock func()
		if unlock, err = m.host.Lock(ctx, m.layout.lock(id)); err == nil {
			return unlock, nil
		}
	}
	_ = m.removeDir(context.WithoutCancel(ctx), id)
	return nil, fmt.Errorf("make the instance directory: %w", err)
}

// makeOverlay creates the sparse writable overlay and formats it ext4 with lazy init, which
// writes almost nothing however large the overlay is.
func (m *Manager) makeOverlay(ctx context.Context, id string, size int64) error {
	p := m.layout.overlay(id)
	if err := m.host.Truncate(ctx, p, size); err != nil {
		return fmt.Errorf("create the overlay: %w", err)
	}
	_, err := m.host.Run(ctx, nil, "mkfs.ext4", "-q", "-F", "-L", "hypeman-overlay",
		"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", p)
	if err != nil {
		return fmt.Errorf("format the overlay: %w", err)
	}
	return nil
}
