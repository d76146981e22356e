package qemu

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
)

// probeTimeout bounds a probe boot. A kernel without a root file system panics within a second
// under working KVM (about 3 s under TCG); a guest that has not by then hangs.
const probeTimeout = 20 * time.Second

// probeMarker is what the probe kernel prints once it has run all the way through its boot.
var probeMarker = []byte("Kernel panic")

// ProbeKVM boots kernel under KVM, with the CPU model Boot would use, and reports whether it runs
// to the end of its boot: /dev/kvm can open and still hang every guest, as under broken nested
// virtualisation. Without an initrd the kernel panics, which -no-reboot turns into QEMU's exit.
func (d *Driver) ProbeKVM(ctx context.Context, h host.Host, kernel string) (bool, error) {
	return probe(ctx, h, kernel, "kvm", d.user)
}

// probe boots kernel under accel as QEMU boots guests: sandboxed, as user, whose groups decide
// whether /dev/kvm opens.
func probe(ctx context.Context, h host.Host, kernel, accel, user string) (bool, error) {
	accelArgs, err := acceleratorArgs(accel)
	if err != nil {
		return false, err
	}
	// Only QEMU's verdict on the accelerator may read as "unusable", not a missing file.
	if _, err := h.LookPath(ctx, Binary); err != nil {
		return false, err
	}
	if _, err := h.Stat(ctx, kernel); err != nil {
		return false, fmt.Errorf("probe kernel: %w", err)
	}
	as, err := grantKernel(ctx, h, kernel, user)
	if err != nil {
		return false, err
	}
	argv := append(as.setpriv(true), Binary, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-M", "q35")
	argv = append(argv, sandboxArgs...)
	argv = append(argv, accelArgs...)
	argv = append(argv, "-smp", "1", "-m", "256M", "-kernel", kernel, "-append", "console=ttyS0 panic=-1", "-serial", "stdio")
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	out, err := h.Run(pctx, nil, argv...)
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	// A failed run is QEMU refusing the accelerator (no /dev/kvm, a CPU feature it cannot set) or
	// a guest that hung until the timeout: either way guests do not run.
	return err == nil && bytes.Contains(out, probeMarker), nil
}
