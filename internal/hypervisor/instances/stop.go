package instances

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// stop powers the guest off gracefully (so the overlay is flushed), and stops the VMM by force
// when the guest has not gone within StopTimeout.
func (m *Manager) stop(ctx context.Context, md *metadata) error {
	vm, err := m.connect(ctx, md)
	if err != nil {
		return err
	}
	defer func() { _ = vm.Close() }()
	st, err := vm.State(ctx)
	if err == nil && st == vmm.Paused {
		err = m.resume(ctx, md) // a paused guest cannot react to the power button
	}
	if err == nil && (st == vmm.Running || st == vmm.Paused) {
		// The button is pressed again every few seconds: a press that lands while the guest is
		// still booting (before its handler listens) is lost, and pressing twice is harmless.
		deadline := time.Now().Add(m.opts.StopTimeout)
		for err == nil {
			if err = vm.PowerButton(ctx); err != nil {
				break
			}
			if m.waitGone(ctx, md, min(powerButtonRepeat, time.Until(deadline))) {
				m.log(ctx, "guest powered off", map[string]any{"id": md.ID})
				return m.clearPID(ctx, md)
			}
			if !time.Now().Before(deadline) || ctx.Err() != nil {
				m.log(ctx, "guest did not power off in time; stopping the VMM", map[string]any{"id": md.ID, "timeout": m.opts.StopTimeout.String()})
				break
			}
		}
	}
	if err != nil {
		m.log(ctx, "graceful power-off failed; stopping the VMM", map[string]any{"id": md.ID, "error": err.Error()})
	}
	return m.quitVMM(ctx, md)
}

// powerButtonRepeat is how long stop waits for the guest before pressing the power button again.
const powerButtonRepeat = 3 * time.Second

// quitVMM stops the VMM process: politely through its API, then by signal.
func (m *Manager) quitVMM(ctx context.Context, md *metadata) error {
	if vm, err := m.connect(ctx, md); err == nil {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = vm.Quit(qctx)
		cancel()
		_ = vm.Close()
		if err == nil && m.waitGone(ctx, md, 5*time.Second) {
			return m.clearPID(ctx, md)
		}
	}
	return m.killVMM(ctx, md)
}

// killVMM ends the VMM process: SIGTERM, then SIGKILL.
func (m *Manager) killVMM(ctx context.Context, md *metadata) error {
	gone, err := m.terminate(ctx, md.PID, m.layout.dir(md.ID))
	if err != nil {
		return err
	}
	if !gone {
		return fmt.Errorf("the %s process %d of %s did not exit after SIGKILL", md.Hypervisor, md.PID, md.Name)
	}
	return m.clearPID(ctx, md)
}

// waitGone waits up to d for the VMM process to exit; a look that fails is asked again.
func (m *Manager) waitGone(ctx context.Context, md *metadata, d time.Duration) bool {
	return m.waitExit(ctx, md.PID, m.layout.dir(md.ID), d)
}

// terminate ends process pid, which ProcessAlive knows by marker: SIGTERM, then SIGKILL. gone is
// false when it outlived both.
func (m *Manager) terminate(ctx context.Context, pid int, marker string) (gone bool, err error) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		alive, err := m.host.ProcessAlive(ctx, pid, marker)
		if err != nil {
			return false, err
		}
		if !alive {
			return true, nil
		}
		if err := m.host.Signal(ctx, pid, sig); err != nil {
			return false, err
		}
		if m.waitExit(ctx, pid, marker, 5*time.Second) {
			return true, nil
		}
	}
	return false, nil
}

// waitExit waits up to d for process pid, known by marker, to exit; a look that fails is asked again.
func (m *Manager) waitExit(ctx context.Context, pid int, marker string, d time.Duration) bool {
	gone := host.Exited(m.host, pid, marker)
	return poll.Within(ctx, d, 50*time.Millisecond, poll.IgnoreErrors(gone)) == nil
}

// clearPID records that no VMM runs, once what the driver ran beside it has finished, and removes
// its socket and its TAP device.
func (m *Manager) clearPID(ctx context.Context, md *metadata) error {
	if drv, err := m.driver(md.Hypervisor); err == nil && md.VMM.Dir != "" {
		if err := drv.Reap(ctx, m.host, md.VMM); err != nil {
			return err
		}
		if err := m.host.Remove(ctx, vmm.SocketPath(drv, md.VMM)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	md.PID, md.Booted, md.StartedAt = 0, false, time.Time{}
	if err := m.saveMetadata(ctx, md); err != nil {
		return err
	}
	// No VMM reads a lazily restored memory image any more (lazy.go).
	if err := m.dropHeldMemory(ctx, md); err != nil {
		return err
	}
	if err := m.dropRAMFile(ctx, md); err != nil {
		return err
	}
	return m.unplugTap(ctx, md)
}
