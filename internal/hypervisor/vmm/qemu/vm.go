package qemu

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

var (
	_ vmm.VM                = (*vm)(nil)
	_ vmm.DiskErrorReporter = (*vm)(nil)
)

// vm controls one QEMU process. It holds no QMP connection between calls: QEMU serves one QMP
// client at a time, and a connection held open here would stall every other caller until Close.
type vm struct {
	h   host.Host
	cfg vmm.Config
	pid int // from QEMU's pid file when connected; 0 if it could not be read
	// user is the host user QEMU runs as ("": the host's own), who holds the snapshot stream's end.
	user string

	mu     sync.Mutex
	closed bool
}

// session runs fn over a fresh QMP connection.
func (v *vm) session(ctx context.Context, fn func(*monitor) error) error {
	v.mu.Lock()
	closed := v.closed
	v.mu.Unlock()
	if closed {
		return fmt.Errorf("QEMU VM %s: %w", v.cfg.Dir, errClosed)
	}
	m, err := dialMonitor(ctx, v.h, socketPath(v.cfg))
	if err != nil {
		return err
	}
	defer func() { _ = m.Close() }()
	return fn(m)
}

func (v *vm) execute(ctx context.Context, command string, args, out any) error {
	return v.session(ctx, func(m *monitor) error { return m.execute(ctx, command, args, out) })
}

func (v *vm) State(ctx context.Context) (vmm.State, error) {
	var status string
	err := v.session(ctx, func(m *monitor) (err error) {
		status, err = m.status(ctx)
		return err
	})
	if err != nil {
		return "", err
	}
	return stateOf(status)
}

// stateOf maps QEMU's run state to the driver-neutral state.
func stateOf(status string) (vmm.State, error) {
	switch status {
	case "running":
		return vmm.Running, nil
	// postmigrate: a snapshot has been written; the VM stays stopped until cont. io-error: a disk
	// write failed (werror=enospc: the host's filesystem is full) and waits for cont to retry it.
	case "paused", "suspended", "postmigrate", "finish-migrate", "io-error":
		return vmm.Paused, nil
	case "prelaunch", "inmigrate":
		return vmm.Created, nil
	case "shutdown":
		return vmm.Shutdown, nil
	}
	return "", fmt.Errorf("QEMU reports the run state %q, which has no VM state (expected running, paused, suspended, postmigrate, finish-migrate, io-error, prelaunch, inmigrate or shutdown)", status)
}

func (v *vm) Pause(ctx context.Context) error { return v.execute(ctx, "stop", nil, nil) }

// Resume continues a paused VM, one that a snapshot left in postmigrate (QEMU takes its disks
// back) and one that a full disk stopped (QEMU retries the writes that failed). A migration still
// under way is cancelled first: when it completed it would stop the VM again.
func (v *vm) Resume(ctx context.Context) error {
	return v.session(ctx, func(m *monitor) error {
		if err := abandonMigration(ctx, m); err != nil {
			return err
		}
		return m.execute(ctx, "cont", nil, nil)
	})
}

// DiskError tells whether QEMU stopped the VM on a failed disk write (run state io-error), and
// which disk it was from query-block's io-status.
func (v *vm) DiskError(ctx context.Context) (*vmm.DiskError, error) {
	var de *vmm.DiskError
	err := v.session(ctx, func(m *monitor) error {
		status, err := m.status(ctx)
		if err != nil || status != "io-error" {
			return err
		}
		var blocks []blockInfo
		if err := m.execute(ctx, "query-block", nil, &blocks); err != nil {
			return err
		}
		de = v.diskError(blocks)
		return nil
	})
	return de, err
}

// blockInfo is what DiskError reads of one query-block entry.
type blockInfo struct {
	Device   string `json:"device"`
	IOStatus string `json:"io-status"` // ok, failed or nospace; absent unless errors stop the VM
	Inserted *struct {
		File string `json:"file"`
	} `json:"inserted"`
}

// diskError names the disk whose write failed, a full one first; the VM may not say which.
func (v *vm) diskError(blocks []blockInfo) *vmm.DiskError {
	de := &vmm.DiskError{}
	for _, b := range blocks {
		if b.IOStatus != "nospace" && (b.IOStatus != "failed" || de.Path != "") {
			continue
		}
		de.NoSpace = b.IOStatus == "nospace"
		for i, d := range v.cfg.Disks {
			if driveID(i) == b.Device {
				de.Path = d.Path
			}
		}
		if de.Path == "" && b.Inserted != nil {
			de.Path = b.Inserted.File
		}
		if de.NoSpace {
			break
		}
	}
	return de
}

func (v *vm) PowerButton(ctx context.Context) error {
	return v.execute(ctx, "system_powerdown", nil, nil)
}

func (v *vm) SetMemory(ctx context.Context, bytes int64) error {
	want, err := hotplugRequest(v.cfg, bytes)
	if err != nil {
		return err
	}
	if v.cfg.HotplugBytes == 0 {
		return nil // only the boot size is allowed, and the guest has it
	}
	return v.session(ctx, func(m *monitor) error {
		var have int64
		if err := m.execute(ctx, "qom-get", qomArgs{Path: hotplugDevice, Property: "requested-size"}, &have); err != nil {
			return err
		}
		if have != want {
			if err := m.execute(ctx, "qom-set", qomArgs{Path: hotplugDevice, Property: "requested-size", Value: want}, nil); err != nil {
				return err
			}
		}
		// virtio-mem plugs and unplugs asynchronously; wait until the guest has done it, so that a
		// snapshot taken next holds only what was asked for.
		var size int64
		err := poll.Within(ctx, memoryResizeTimeout, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
			err := m.execute(ctx, "qom-get", qomArgs{Path: hotplugDevice, Property: "size"}, &size)
			return err == nil && size == want, err
		})
		if errors.Is(err, poll.ErrTimeout) {
			return fmt.Errorf("the guest holds %d bytes of hotplug memory after %s; %d were asked for", size, memoryResizeTimeout, want)
		}
		return err
	})
}

func (v *vm) Memory(ctx context.Context) (int64, error) {
	if v.cfg.HotplugBytes == 0 {
		return v.cfg.MemoryBytes, nil
	}
	var plugged int64
	err := v.session(ctx, func(m *monitor) error {
		return m.execute(ctx, "qom-get", qomArgs{Path: hotplugDevice, Property: "size"}, &plugged)
	})
	return v.cfg.MemoryBytes + plugged, err
}

// memoryResizeTimeout bounds how long SetMemory waits for the guest to plug or unplug memory.
const memoryResizeTimeout = 15 * time.Second

type qomArgs struct {
	Path     string `json:"path"`
	Property string `json:"property"`
	Value    any    `json:"value,omitempty"`
}

// hotplugRequest is virtio-mem's requested size for a guest memory total of bytes.
func hotplugRequest(cfg vmm.Config, bytes int64) (int64, error) {
	limit := cfg.MemoryBytes + cfg.HotplugBytes
	if bytes < cfg.MemoryBytes || bytes > limit {
		if cfg.HotplugBytes == 0 {
			return 0, fmt.Errorf("memory %d bytes: this VM has no hotplug memory, so its size stays %d bytes", bytes, cfg.MemoryBytes)
		}
		return 0, fmt.Errorf("memory %d bytes: must be between the boot size %d and %d bytes (boot + hotplug)", bytes, cfg.MemoryBytes, limit)
	}
	req := bytes - cfg.MemoryBytes
	if req%hotplugBlock != 0 {
		return 0, fmt.Errorf("memory %d bytes: must be the boot size %d plus a multiple of 2 MiB", bytes, cfg.MemoryBytes)
	}
	return req, nil
}

// Quit asks QEMU to exit and waits until its QMP connection has closed and, when its pid is
// known, the process is gone.
func (v *vm) Quit(ctx context.Context) error {
	err := v.session(ctx, func(m *monitor) error {
		if err := m.execute(ctx, "quit", nil, nil); err != nil && !errors.Is(err, errClosed) {
			return err
		}
		select {
		case <-m.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("waiting for QEMU to close its QMP connection: %w", ctx.Err())
		}
	})
	if err != nil {
		if v.pid > 0 {
			if alive, aerr := v.h.ProcessAlive(ctx, v.pid, v.cfg.Dir); aerr == nil && !alive {
				return nil // it had exited already, e.g. after the guest powered off
			}
		}
		return err
	}
	if v.pid == 0 {
		return nil
	}
	return waitExit(ctx, v.h, v.pid, v.cfg.Dir)
}

// Close makes every later call fail; there is no connection to end between calls.
func (v *vm) Close() error {
	v.mu.Lock()
	v.closed = true
	v.mu.Unlock()
	return nil
}
