package cloudhypervisor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

var _ vmm.VM = (*VM)(nil)

// VM is a control connection to one cloud-hypervisor process.
type VM struct {
	c      *client
	h      host.Host
	cfg    vmm.Config
	socket string
	// pid is what vmm.ping reported; Quit waits for it to exit.
	pid int
}

// State reads vm.info. Cloud Hypervisor never reports "Shutdown": a VM that was shut down is
// "Created" again, and telling the two apart is up to the caller.
func (v *VM) State(ctx context.Context) (vmm.State, error) {
	info, err := v.c.info(ctx)
	if isNoVM(err) {
		return "", fmt.Errorf("cloud-hypervisor on %s: %w", v.socket, vmm.ErrNoVM)
	}
	if err != nil {
		return "", err
	}
	switch s := vmm.State(info.State); s {
	case vmm.Created, vmm.Running, vmm.Paused, vmm.Shutdown:
		return s, nil
	}
	return "", fmt.Errorf("cloud-hypervisor on %s reports the VM state %q, which the driver does not handle", v.socket, info.State)
}

func (v *VM) Pause(ctx context.Context) error  { return v.change(ctx, "vm.pause", vmm.Paused) }
func (v *VM) Resume(ctx context.Context) error { return v.change(ctx, "vm.resume", vmm.Running) }

// change sends a state-changing action. A failure is judged by the state the VM is in afterwards,
// not by the status code: a pause that fails because the VM is already paused succeeded.
func (v *VM) change(ctx context.Context, action string, want vmm.State) error {
	err := v.c.put(ctx, action, nil)
	if err == nil {
		return nil
	}
	st, stErr := v.State(ctx)
	if stErr == nil && st == want {
		return nil
	}
	return withState(err, st, stErr)
}

// withState adds the VM's current state (or why it is unknown) to a failed action's error.
func withState(err error, st vmm.State, stErr error) error {
	switch {
	case errors.Is(stErr, vmm.ErrNoVM):
		return fmt.Errorf("%w (and the VMM holds no VM: %w)", err, vmm.ErrNoVM)
	case stErr != nil:
		return fmt.Errorf("%w (the VM state is unknown: %v)", err, stErr)
	}
	return fmt.Errorf("%w (the VM is %s)", err, st)
}

// Snapshot writes the paused guest into dir, which must exist and be empty.
func (v *VM) Snapshot(ctx context.Context, dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("snapshot directory %q is not an absolute path", dir)
	}
	if err := withinRules(v.cfg, dir); err != nil {
		return err
	}
	entries, err := v.h.ReadDir(ctx, dir)
	if err != nil {
		return fmt.Errorf("snapshot directory: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("snapshot directory %s is not empty: it holds %s", dir, entries[0].Name())
	}
	err = v.snapshotWhenRestored(ctx, vmSnapshotConfig{DestinationURL: "file://" + dir})
	if err == nil {
		return nil
	}
	st, stErr := v.State(ctx)
	if stErr == nil && st != vmm.Paused {
		return fmt.Errorf("snapshot needs the VM Paused, and it is %s: %w", st, err)
	}
	return withState(err, st, stErr)
}

// restoringWait bounds how long Snapshot waits for an on-demand restore to finish copying the
// guest's memory in; at disk speed that is seconds per GiB.
const restoringWait = 5 * time.Minute

// snapshotWhenRestored sends vm.snapshot, and again with a growing pause for as long as the
// server (v53 on) answers that an on-demand restore is still copying the memory in: it refuses
// to snapshot until every page is in, and wrote nothing.
func (v *VM) snapshotWhenRestored(ctx context.Context, body vmSnapshotConfig) error {
	wctx, cancel := context.WithTimeout(ctx, restoringWait)
	defer cancel()
	var last error
	tries := 0
	err := poll.Backoff(wctx, 20*time.Millisecond, time.Second, func(ctx context.Context) (bool, error) {
		tries++
		last = v.c.put(ctx, "vm.snapshot", body)
		if last != nil && stillRestoring(last) {
			return false, nil
		}
		return true, last
	})
	if poll.Stopped(err) && last != nil {
		return fmt.Errorf("%w (asked %d times: the on-demand restore had not finished reading the memory in)", last, tries)
	}
	return err
}

// stillRestoring reports whether err is the answer to a snapshot during an on-demand restore
// (VmRestoring, vmm/src/vm.rs): 500, "VM on-demand memory restore is still in progress".
func stillRestoring(err error) bool {
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusInternalServerError || len(apiErr.Messages) == 0 {
		return false
	}
	return strings.HasSuffix(apiErr.Messages[len(apiErr.Messages)-1], "restore is still in progress")
}

func (v *VM) PowerButton(ctx context.Context) error {
	if err := v.c.put(ctx, "vm.power-button", nil); err != nil {
		st, stErr := v.State(ctx)
		return withState(err, st, stErr)
	}
	return nil
}

// SetMemory asks virtio-mem for a total of bytes, between the boot size and boot + hotplug, and
// waits until the guest has plugged or unplugged its way there.
func (v *VM) SetMemory(ctx context.Context, bytes int64) error {
	info, err := v.c.info(ctx)
	if isNoVM(err) {
		return fmt.Errorf("set memory: %w", vmm.ErrNoVM)
	}
	if err != nil {
		return err
	}
	mem := info.Config.Memory
	if bytes != mem.Size+mem.HotpluggedSize {
		switch {
		case mem.HotplugMethod != "VirtioMem" || mem.HotplugSize == 0:
			return fmt.Errorf("set memory to %d bytes: the VM booted with %d bytes and no memory hotplug", bytes, mem.Size)
		case bytes < mem.Size || bytes > mem.Size+mem.HotplugSize:
			return fmt.Errorf("set memory to %d bytes: allowed is %d (boot) to %d (boot + hotplug)", bytes, mem.Size, mem.Size+mem.HotplugSize)
		case (bytes-mem.Size)%virtioMemBlock != 0:
			return fmt.Errorf("set memory to %d bytes: the amount above the boot size must be a multiple of 2 MiB", bytes)
		}
		// Only when the size changes: CH answers 500 to a resize to the size it already has.
		if err := v.c.put(ctx, "vm.resize", vmResize{DesiredRAM: bytes}); err != nil {
			return err
		}
	}
	return v.waitMemory(ctx, bytes)
}

// Memory is vm.info's memory_actual_size with the balloon, which the driver keeps empty, added back.
func (v *VM) Memory(ctx context.Context) (int64, error) {
	info, err := v.c.info(ctx)
	if isNoVM(err) {
		return 0, fmt.Errorf("read memory: %w", vmm.ErrNoVM)
	}
	if err != nil {
		return 0, err
	}
	bytes := info.MemoryActualSize
	if b := info.Config.Balloon; b != nil {
		bytes += b.Size
	}
	return bytes, nil
}

// memoryResizeTimeout bounds how long SetMemory waits for the guest to plug or unplug memory.
const memoryResizeTimeout = 15 * time.Second

// waitMemory waits for vm.info's memory_actual_size to reach bytes (less the balloon, which the
// driver keeps empty): virtio-mem plugs and unplugs at the guest's pace, and a snapshot taken too
// early would hold memory that was asked away.
func (v *VM) waitMemory(ctx context.Context, bytes int64) error {
	ctx, cancel := context.WithTimeout(ctx, memoryResizeTimeout)
	defer cancel()
	var actual int64
	err := poll.Until(ctx, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		info, err := v.c.info(ctx)
		if err != nil && ctx.Err() != nil {
			return false, nil // the wait ran out during a look: said below, with the last size seen
		}
		if err != nil {
			return false, fmt.Errorf("set memory to %d bytes: %w", bytes, err)
		}
		want := bytes
		if b := info.Config.Balloon; b != nil {
			want -= b.Size
		}
		actual = info.MemoryActualSize
		return actual == want, nil
	})
	if poll.Stopped(err) {
		return fmt.Errorf("set memory to %d bytes: the guest has %d bytes after waiting: %w", bytes, actual, err)
	}
	return err
}

// Quit shuts the VMM down and returns once its process and socket are gone and the console log
// holds all it printed. A VMM that is already gone is not an error.
func (v *VM) Quit(ctx context.Context) error {
	err := v.c.put(ctx, "vmm.shutdown", nil)
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return fmt.Errorf("quit the VMM: %w", err)
	}
	// Any other error is the connection: the VMM exited while answering, or was gone already.
	if err := waitGone(ctx, v.h, v.pid, v.socket); err != nil {
		return fmt.Errorf("quit the VMM: %w", err)
	}
	return waitRelay(ctx, v.h, v.cfg)
}

func (v *VM) Close() error {
	v.c.close()
	return nil
}
