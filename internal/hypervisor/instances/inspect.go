package instances

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// Get returns an instance by id or name, with its live state.
func (m *Manager) Get(ctx context.Context, idOrName string) (*Instance, error) {
	id, err := m.resolve(ctx, idOrName)
	if err != nil {
		return nil, err
	}
	md, err := m.loadMetadata(ctx, id)
	if err != nil {
		return nil, err
	}
	if md.Creating != nil {
		return m.inspectUnfinished(ctx, md)
	}
	return m.inspect(ctx, md)
}

// List returns every instance on the host, sorted by name, with its live state. One that another
// operation is still creating is left out; what a create that died left is listed as Unknown.
func (m *Manager) List(ctx context.Context) ([]*Instance, error) {
	entries, err := m.host.ReadDir(ctx, m.layout.guests())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// Inspected in parallel: on an SSH-reached host each inspection is a few round trips.
	found := make([]*Instance, len(entries))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, e := range entries {
		if !e.IsDir() || !ulidRE.MatchString(e.Name()) {
			continue
		}
		g.Go(func() error {
			md, err := m.loadMetadata(gctx, e.Name())
			if errors.Is(err, ErrNotFound) {
				return nil // being created or deleted right now
			}
			if err != nil {
				return err
			}
			if md.Creating != nil {
				found[i], err = m.inspectUnfinished(gctx, md)
				if errors.Is(err, ErrNotFound) {
					return nil
				}
				return err
			}
			found[i], err = m.inspect(gctx, md)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []*Instance
	for _, inst := range found {
		if inst != nil {
			out = append(out, inst)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// inspect derives the live state and fills in the public view.
func (m *Manager) inspect(ctx context.Context, md *metadata) (*Instance, error) {
	obs, err := m.observe(ctx, md)
	if err != nil {
		return nil, err
	}
	st, reason := obs.state, obs.reason
	seen := obs.spec(md)
	inst := &Instance{
		ID: md.ID, Name: md.Name, Image: md.Image, ImageDigest: md.ImageDigest, VCPUs: seen.VCPUs, MaxVCPUs: md.MaxVCPUs,
		Memory: seen.Memory, MaxMemory: seen.MaxMemory, Hotplug: seen.Hotplug, OverlaySize: md.OverlaySize,
		Entrypoint: md.Entrypoint, Cmd: md.Cmd, Env: md.Env, Workdir: md.Workdir,
		Hypervisor: md.Hypervisor, HypervisorVersion: md.HypervisorVersion, Accelerator: md.Accelerator,
		KernelRelease: md.KernelRelease, State: st, StateReason: reason, CreatedAt: md.CreatedAt,
		Dir: m.layout.dir(md.ID), ConsoleLog: m.layout.console(md.ID),
		IPAddress: md.IPAddress, MACAddress: md.MACAddress, TapDevice: md.TapDevice, PeerGroups: md.PeerGroups,
		Volumes: md.Volumes, WaitFor: md.WaitFor,
	}
	switch st {
	case Running, Paused, Created, Shutdown, Unknown:
		inst.PID, inst.StartedAt = md.PID, md.StartedAt
	case Standby:
		inst.SnapshotBytes = obs.snapshotBytes
	case Stopped:
		inst.ExitCode = obs.exitCode
	}
	return inst, nil
}

// inspectUnfinished is the view of an instance whose create has not finished. While the create
// runs it is no instance yet: ErrNotFound. Once the create is dead, it is reported as Unknown and
// says so, so that it can be seen and deleted (a create of its name also reclaims it).
func (m *Manager) inspectUnfinished(ctx context.Context, md *metadata) (*Instance, error) {
	md, live, err := m.settle(ctx, md)
	switch {
	case err != nil:
		return nil, err
	case md.Creating == nil:
		return m.inspect(ctx, md) // finished meanwhile
	case live:
		return nil, fmt.Errorf("%w: instance %s (%s) is being created by another operation (%s)", ErrNotFound, md.Name, md.ID, md.Creating)
	}
	inst, err := m.inspect(ctx, md)
	if err != nil {
		return nil, err
	}
	inst.State, inst.StateReason = Unknown, "the instance "+interrupted(md)
	return inst, nil
}

// deriveState follows docs/adr/0001-state-is-derived.md: no VMM → Standby when a complete snapshot exists, else Stopped;
// a VMM that answers → its state; anything else → Unknown with the reason. Only an error reaching
// the host is an error.
func (m *Manager) deriveState(ctx context.Context, md *metadata) (State, string, error) {
	obs, err := m.observe(ctx, md)
	return obs.state, obs.reason, err
}

// observed is what one look at the host tells about an instance.
type observed struct {
	state         State
	reason        string
	snapshotBytes int64 // Standby only
	exitCode      *int  // Stopped only
	memory        int64 // Running or Paused with a hotplug region: the guest's memory now; else 0
	vcpus         int   // Running or Paused with vCPU slots: the vCPUs it has now; else 0
}

// spec is md's spec with the memory and vCPUs the guest has now, which are not what md asks for
// while a live resize has not finished: one whose caller died after saving the new size, or a
// guest that did not take its memory back after a boot or restore. So the next plan shows the
// difference and the next apply gives them again.
func (o observed) spec(md *metadata) Spec {
	s := md.spec()
	if o.vcpus != 0 {
		s.VCPUs = o.vcpus
	}
	if o.memory == 0 || o.memory == s.LiveMemory() {
		return s
	}
	if s.Hotplug > 0 { // deprecated hotplug_memory: memory is what it boots with
		s.Hotplug = max(o.memory-s.Memory, 0)
		return s
	}
	s.Memory = o.memory
	return s
}

func (m *Manager) observe(ctx context.Context, md *metadata) (observed, error) {
	alive, err := m.host.ProcessAlive(ctx, md.PID, m.layout.dir(md.ID))
	if err != nil {
		return observed{}, fmt.Errorf("inspect the VMM of %s: %w", md.Name, err)
	}
	if !alive {
		snap, err := m.snapshotBytes(ctx, md.ID)
		if err != nil {
			return observed{}, fmt.Errorf("inspect the snapshot of %s: %w", md.Name, err)
		}
		if snap >= 0 {
			return observed{state: Standby, snapshotBytes: snap}, nil
		}
		end := md.Ended
		if end == nil && md.PID != 0 { // the VMM ended on its own and no operation has seen it yet
			e := m.readBootEnd(ctx, md.ID)
			end = &e
		}
		if end == nil { // never booted, or stopped on request
			return observed{state: Stopped}, nil
		}
		return observed{state: Stopped, reason: end.Reason, exitCode: end.ExitCode}, nil
	}
	return m.askVMM(ctx, md), nil
}

// DefaultProbeTimeout is how long a live VMM is given to answer a look at its state, unless the
// caller gives it another (WithProbeTimeout). One that does not answer in time is Unknown, and
// every look at it costs this long.
const DefaultProbeTimeout = 2 * time.Second

type probeTimeoutKey struct{}

// WithProbeTimeout gives every live VMM that the looks under ctx ask d to answer, instead of
// DefaultProbeTimeout; ctx's own deadline still ends the wait sooner. d <= 0 keeps the default.
func WithProbeTimeout(ctx context.Context, d time.Duration) context.Context {
	if d <= 0 {
		return ctx
	}
	return context.WithValue(ctx, probeTimeoutKey{}, d)
}

func probeTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Value(probeTimeoutKey{}).(time.Duration); ok {
		return d
	}
	return DefaultProbeTimeout
}

// askVMM maps what a live VMM reports onto the instance states, and reads the memory of a running
// or paused guest that has a hotplug region and the vCPUs of one that has vCPU slots.
func (m *Manager) askVMM(ctx context.Context, md *metadata) observed {
	st, reason, vm := m.askState(ctx, md)
	obs := observed{state: st, reason: reason}
	if vm == nil {
		return obs
	}
	defer func() { _ = vm.Close() }()
	if md.VMM.HotplugBytes > 0 && (st == Running || st == Paused) {
		qctx, cancel := context.WithTimeout(ctx, probeTimeout(ctx))
		defer cancel()
		if bytes, err := vm.Memory(qctx); err == nil {
			obs.memory = bytes
		}
	}
	if md.VMM.MaxVCPUs != 0 && (st == Running || st == Paused) {
		qctx, cancel := context.WithTimeout(ctx, probeTimeout(ctx))
		defer cancel()
		if n, err := vm.VCPUs(qctx); err == nil {
			obs.vcpus = n
		}
	}
	return obs
}

// askState maps what a live VMM reports onto the instance states. The connection it returns, when
// the VMM answered, is the caller's to close.
func (m *Manager) askState(ctx context.Context, md *metadata) (State, string, vmm.VM) {
	drv, err := m.driver(md.Hypervisor)
	if err != nil {
		return Unknown, err.Error(), nil
	}
	qctx, cancel := context.WithTimeout(ctx, probeTimeout(ctx))
	defer cancel()
	vm, err := drv.Connect(qctx, m.host, md.VMM)
	if err != nil {
		return Unknown, fmt.Sprintf("the %s process (pid %d) is alive but its control socket does not answer: %v", md.Hypervisor, md.PID, err), nil
	}
	vs, err := vm.State(qctx)
	switch {
	case errors.Is(err, vmm.ErrNoVM):
		_ = vm.Close()
		return Unknown, fmt.Sprintf("the %s process (pid %d) holds no VM", md.Hypervisor, md.PID), nil
	case err != nil:
		_ = vm.Close()
		return Unknown, fmt.Sprintf("the %s process (pid %d) did not report its state: %v", md.Hypervisor, md.PID, err), nil
	}
	switch vs {
	case vmm.Running:
		return Running, "", vm
	case vmm.Paused:
		return Paused, pauseReason(qctx, vm), vm
	case vmm.Shutdown:
		return Shutdown, "", vm
	case vmm.Created:
		if md.Booted {
			return Shutdown, "", vm // Cloud Hypervisor says Created again after a shutdown
		}
		return Created, "", vm
	}
	return Unknown, fmt.Sprintf("the %s process reports the unknown state %q", md.Hypervisor, vs), vm
}
