// Package qemu drives QEMU (qemu-system-x86_64, q35 machine, virtio-pci devices) through QMP on a
// unix socket in the instance directory. Snapshots are QEMU migration streams.
package qemu

import (
	"context"
	"fmt"
	"regexp"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

var (
	_ vmm.Driver    = (*Driver)(nil)
	_ vmm.KVMProber = (*Driver)(nil)
)

const driverName = "qemu"

// Driver starts QEMU processes and connects to them. It keeps no state beyond who QEMU runs as.
type Driver struct {
	user string // the host user QEMU runs as (RunAs); "": the host's own
}

// New returns the QEMU driver.
func New() *Driver { return &Driver{} }

func (*Driver) Name() string { return driverName }

func (*Driver) Available(ctx context.Context, h host.Host) bool {
	_, err := h.LookPath(ctx, Binary)
	return err == nil
}

var versionRE = regexp.MustCompile(`version (\d+\.\d+\.\d+)`)

// Version is QEMU's "major.minor.micro", the form QMP reports too.
func (*Driver) Version(ctx context.Context, h host.Host) (string, error) {
	out, err := h.Run(ctx, nil, Binary, "--version")
	if err != nil {
		return "", err
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s --version printed no version: %q", Binary, out)
	}
	return string(m[1]), nil
}

func (*Driver) Program() string { return Binary }

func (*Driver) SocketName() string { return socketName }

func (*Driver) LogName() string { return logName }

// Reap has nothing to do: QEMU runs no process beside itself.
func (*Driver) Reap(context.Context, host.Host, vmm.Config) error { return nil }

// Boot starts QEMU for cfg and returns its pid once QMP answers and the guest runs. On failure no
// QEMU process is left.
func (d *Driver) Boot(ctx context.Context, h host.Host, cfg vmm.Config) (int, error) {
	if err := validate(cfg); err != nil {
		return 0, err
	}
	if err := freshRAMFile(ctx, h, cfg); err != nil {
		return 0, err
	}
	return launch(ctx, h, cfg, d.user, nil, func(m *monitor) error {
		return m.requireStatus(ctx, "running", "after boot")
	})
}

// Connect checks that QEMU answers on its socket and returns a handle on it.
func (d *Driver) Connect(ctx context.Context, h host.Host, cfg vmm.Config) (vmm.VM, error) {
	m, err := dialMonitor(ctx, h, socketPath(cfg))
	if err != nil {
		return nil, fmt.Errorf("connect to QEMU for %s: %w", cfg.Dir, err)
	}
	_ = m.Close()
	return &vm{h: h, cfg: cfg, pid: readPID(ctx, h, cfg), user: d.user}, nil
}
