// Package instances is the hypeman instance manager: it creates, inspects, moves between states
// and deletes microVMs on one host. It imports nothing from Terraform; the provider calls it.
package instances

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/images"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// Logger receives one structured line per step of a flow. Env values are never passed to it.
type Logger func(ctx context.Context, msg string, fields map[string]any)

// Options configure a Manager.
type Options struct {
	Host    host.Host
	DataDir string // default /var/lib/hypeman
	// Drivers are the VMMs instances can run under, in order of preference; DefaultHypervisor
	// (default: the first driver's name) picks one when a Spec does not.
	Drivers           []vmm.Driver
	DefaultHypervisor string
	// Accelerator is "kvm", "tcg" or "auto" (kvm when the driver finds it usable).
	Accelerator string
	System      system.Config // CacheDir defaults to {DataDir}/system
	// CompressSnapshots turns LZ4 compression of standby memory on (the default in the provider).
	CompressSnapshots bool
	// SnapshotMode is how Standby snapshots are taken and restored (lazy.go); "" is
	// SnapshotCompressed. SnapshotLazy leaves them uncompressed, whatever CompressSnapshots says.
	SnapshotMode SnapshotMode
	// StopTimeout bounds a graceful guest power-off before the VMM is stopped by force.
	StopTimeout time.Duration
	// VMMUser is the host user the VMMs run as, where the driver can (vmm.UserRunner); "" or
	// RootVMMUser: as the user the host runs commands as. The provider defaults it to DefaultVMMUser.
	VMMUser string
	// Network is the host network instances join; the zero value gives them none.
	Network network.Config
	Log     Logger
}

// Manager is the instance manager for one host.
type Manager struct {
	opts   Options
	host   host.Host
	layout layout
	images *images.Store

	accelMu sync.Mutex // one KVM probe at a time

	versionsMu sync.Mutex
	versions   map[string]string // VMM version by driver, asked once per manager

	memory hostMemory

	net      *network.Network // nil when instances get no network
	netMu    sync.Mutex       // one host network setup at a time
	netReady bool
}

// DefaultDataDir is where instances live when the provider does not say otherwise.
const DefaultDataDir = "/var/lib/hypeman"

// New makes a Manager; it touches nothing on the host until the first call.
func New(opts Options) (*Manager, error) {
	if opts.Host == nil {
		opts.Host = host.Local{}
	}
	if opts.DataDir == "" {
		opts.DataDir = DefaultDataDir
	}
	if opts.System.CacheDir == "" {
		opts.System.CacheDir = layout{opts.DataDir}.system()
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 30 * time.Second
	}
	if opts.Accelerator == "" {
		opts.Accelerator = DefaultAccelerator
	}
	if opts.Log == nil {
		opts.Log = func(context.Context, string, map[string]any) {}
	}
	if opts.SnapshotMode == "" {
		opts.SnapshotMode = SnapshotCompressed
	}
	if err := ValidateSnapshotMode(string(opts.SnapshotMode)); err != nil {
		return nil, err
	}
	if err := ValidateDataDir(opts.DataDir, opts.Drivers); err != nil {
		return nil, err
	}
	if len(opts.Drivers) == 0 {
		return nil, errors.New("instance manager: no VMM driver configured")
	}
	for i, d := range opts.Drivers {
		if driverNamed(opts.Drivers[:i], d.Name()) != nil {
			return nil, fmt.Errorf("instance manager: two VMM drivers are named %q", d.Name())
		}
	}
	if err := runAs(opts.Drivers, opts.VMMUser); err != nil {
		return nil, err
	}
	if opts.DefaultHypervisor == "" {
		opts.DefaultHypervisor = opts.Drivers[0].Name()
	}
	if driverNamed(opts.Drivers, opts.DefaultHypervisor) == nil {
		return nil, fmt.Errorf("instance manager: default hypervisor %q has no driver", opts.DefaultHypervisor)
	}
	l := layout{opts.DataDir}
	m := &Manager{opts: opts, host: opts.Host, layout: l, images: images.NewStore(opts.Host, l.images())}
	m.images.Log = opts.Log
	if opts.Network.Enabled {
		n, err := network.New(opts.Host, opts.Network, l.network())
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		m.net = n
	}
	return m, nil
}

// DataDir is where this manager keeps its instances on the host.
func (m *Manager) DataDir() string { return m.opts.DataDir }

func (m *Manager) log(ctx context.Context, msg string, fields map[string]any) {
	m.opts.Log(ctx, msg, fields)
}

func (m *Manager) driver(name string) (vmm.Driver, error) {
	d := driverNamed(m.opts.Drivers, name)
	if d == nil {
		return nil, fmt.Errorf("%w: hypervisor %q is not configured on this provider", ErrInvalidConfig, name)
	}
	return d, nil
}

// driverNamed is the driver of the hypervisor name; nil when drivers has none.
func driverNamed(drivers []vmm.Driver, name string) vmm.Driver {
	for _, d := range drivers {
		if d.Name() == name {
			return d
		}
	}
	return nil
}

// vmmVersion is the installed version of drv's VMM. Asking runs the binary, so it is asked once
// per manager (a provider process), not on every boot, probe and restore.
func (m *Manager) vmmVersion(ctx context.Context, drv vmm.Driver) (string, error) {
	m.versionsMu.Lock()
	defer m.versionsMu.Unlock()
	if v, ok := m.versions[drv.Name()]; ok {
		return v, nil
	}
	v, err := drv.Version(ctx, m.host)
	if err != nil {
		return "", err
	}
	if m.versions == nil {
		m.versions = map[string]string{}
	}
	m.versions[drv.Name()] = v
	return v, nil
}

// StateOption changes how SetState reaches its target.
type StateOption func(*stateOptions)

type stateOptions struct {
	discardSnapshot bool
}

// WithDiscardSnapshot makes Standby → Stopped delete the memory snapshot instead of restoring it
// to power the guest off cleanly: the way out of a snapshot that cannot be restored. For the
// guest it is a power cut; the overlay stays as it was when the snapshot was taken. It changes
// nothing on any other path.
func WithDiscardSnapshot() StateOption {
	return func(o *stateOptions) { o.discardSnapshot = true }
}

// SetState moves an instance to target along the state graph, one hop at a time, re-reading the
// live state before each hop. Asking for the current state does nothing.
func (m *Manager) SetState(ctx context.Context, idOrName string, target State, opts ...StateOption) (*Instance, error) {
	if _, err := Plan(Stopped, target); err != nil {
		return nil, err
	}
	var o stateOptions
	for _, opt := range opts {
		opt(&o)
	}
	id, err := m.resolve(ctx, idOrName)
	if err != nil {
		return nil, err
	}
	err = m.withLock(ctx, id, func() error { return m.reachWith(ctx, id, target, o) })
	if err != nil {
		return nil, err
	}
	return m.Get(ctx, id)
}

// KillProbeTimeout is how long a state change gives a VMM that did not answer a look
// (DefaultProbeTimeout) before it kills it: long enough for one that is only slow on a loaded host.
const KillProbeTimeout = 10 * time.Second

// reach runs hops until the instance is in target. The caller holds the instance lock.
func (m *Manager) reach(ctx context.Context, id string, target State) error {
	return m.reachWith(ctx, id, target, stateOptions{})
}

func (m *Manager) reachWith(ctx context.Context, id string, target State, o stateOptions) error {
	booted, restored := false, false
	for range 8 { // the longest path has four hops; a hop may land further than one step
		md, err := m.loadMetadata(ctx, id)
		if err != nil {
			return err
		}
		cur, reason, err := m.deriveState(ctx, md)
		if err == nil && cur == Unknown {
			// A VMM that is only slow gets a longer look before it is killed for not answering.
			cur, reason, err = m.deriveState(WithProbeTimeout(ctx, max(probeTimeout(ctx), KillProbeTimeout)), md)
		}
		if err != nil {
			return err
		}
		if cur == target {
			if restored && target == Running {
				return m.awaitRestored(ctx, md) // a restore to Running honours wait_for (wait.go)
			}
			return nil
		}
		if cur == Stopped && booted {
			return exitError(fmt.Sprintf("%s is Stopped again right after it booted: %s; see %s", md.Name, reason, m.layout.console(md.ID)))
		}
		booted = booted || cur == Stopped || cur == Shutdown
		restored = restored || cur == Standby
		if cur == Unknown {
			// A VMM that does not answer can only be stopped; the next round plans from there.
			m.log(ctx, "stopping an unresponsive VMM", map[string]any{"id": id, "reason": reason})
			if err := m.killVMM(ctx, md); err != nil {
				return fmt.Errorf("instance %s is in an unknown state (%s) and its VMM could not be stopped: %w", md.Name, reason, err)
			}
			continue
		}
		path, err := Plan(cur, target)
		if err != nil {
			return err
		}
		m.log(ctx, "state transition", map[string]any{"id": id, "from": string(cur), "to": string(path[1]), "target": string(target)})
		if err := m.hop(ctx, md, cur, path[1], target, o); err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: instance %s did not reach %s", ErrInvalidState, id, target)
}

// hop performs one edge of the state graph.
func (m *Manager) hop(ctx context.Context, md *metadata, from, to, target State, o stateOptions) error {
	switch {
	case from == Stopped && to == Created:
		return m.start(ctx, md) // boots through Created to Running
	case (from == Created || from == Shutdown) && to == Running:
		if err := m.quitVMM(ctx, md); err != nil {
			return err
		}
		return m.start(ctx, md)
	case from == Running && to == Paused && target == Standby:
		return m.standby(ctx, md, true) // shrinks memory while the guest can still give it back
	case from == Running && to == Paused:
		return m.pause(ctx, md)
	case from == Paused && to == Running:
		return m.resume(ctx, md)
	case from == Paused && to == Standby:
		return m.standby(ctx, md, false)
	case from == Standby && to == Stopped && o.discardSnapshot:
		return m.discardSnapshot(ctx, md) // asked for explicitly: a power cut for the guest
	case from == Standby && (to == Paused || to == Stopped):
		// Standby → Stopped restores first so that the guest powers off cleanly and the overlay
		// is consistent; discarding a snapshot would be a power cut.
		return m.restore(ctx, md)
	case (from == Running || from == Paused || from == Created) && to == Shutdown:
		return m.stop(ctx, md)
	case from == Shutdown && to == Stopped:
		return m.quitVMM(ctx, md)
	}
	return fmt.Errorf("%w: no flow for %s → %s", ErrInvalidState, from, to)
}

// connect opens the control connection of an instance's running VMM.
func (m *Manager) connect(ctx context.Context, md *metadata) (vmm.VM, error) {
	drv, err := m.driver(md.Hypervisor)
	if err != nil {
		return nil, err
	}
	vm, err := drv.Connect(ctx, m.host, md.VMM)
	if err != nil {
		return nil, fmt.Errorf("connect to the %s of %s: %w", md.Hypervisor, md.Name, err)
	}
	return vm, nil
}
