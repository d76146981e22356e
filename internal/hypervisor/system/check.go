package system

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
)

// The inputs of a Config, looked at on the host before anything is built: a plan can refuse a
// kernel that is not one without reading megabytes. Prepare still checks everything it builds.

// What each input may be, for error messages and documentation.
const (
	KernelAllowed  = "an uncompressed PVH vmlinux or a distribution bzImage (such as /boot/vmlinuz-<release>)"
	BusyboxAllowed = "a statically linked busybox executable (Debian: /bin/busybox of the busybox-static package)"
	ModulesAllowed = "the kernel's module directory, lib/modules/<release>, with its modules.dep (depmod writes it)"
)

// ErrBadModules means the configured module directory cannot be read as one.
var ErrBadModules = errors.New("unusable kernel module directory")

// InputError is one input of a Config that cannot be used: the setting ("kernel",
// "kernel_modules", "busybox"), its path on the host, what is wrong and what is allowed.
type InputError struct {
	Setting string
	Path    string
	Problem string
	Allowed string
	Err     error // fs.ErrNotExist, ErrNotKernel, ErrBadBusybox or ErrBadModules
}

func (e *InputError) Error() string {
	return fmt.Sprintf("%s %q %s; allowed: %s", e.Setting, e.Path, e.Problem, e.Allowed)
}

func (e *InputError) Unwrap() error { return e.Err }

// busyboxHeadBytes is how much of busybox is read to find its program headers, which follow the
// ELF header.
const busyboxHeadBytes = 64 << 10

// CheckKernel checks that p on h is a file with the header of a kernel Prepare can boot: an ELF
// or a bzImage ("HdrS" at 0x202).
func CheckKernel(ctx context.Context, h host.Host, p string) error {
	hdr, err := readHead(ctx, h, "kernel", p, KernelAllowed, ErrNotKernel, bzHeaderEnd)
	if err != nil {
		return err
	}
	if bytes.HasPrefix(hdr, []byte(elf.ELFMAG)) || len(hdr) >= bzHeaderEnd && string(hdr[bzMagic:bzMagic+4]) == "HdrS" {
		return nil
	}
	return &InputError{Setting: "kernel", Path: p, Allowed: KernelAllowed, Err: ErrNotKernel, Problem: fmt.Sprintf(
		"is not a Linux kernel: neither an ELF vmlinux nor a bzImage (no \"HdrS\" boot header at 0x%x; the file starts with % x)", bzMagic, head(hdr, 8))}
}

// CheckBusybox checks that p on h is a statically linked ELF executable.
func CheckBusybox(ctx context.Context, h host.Host, p string) error {
	hdr, err := readHead(ctx, h, "busybox", p, BusyboxAllowed, ErrBadBusybox, busyboxHeadBytes)
	if err != nil {
		return err
	}
	bad := func(problem string) error {
		return &InputError{Setting: "busybox", Path: p, Allowed: BusyboxAllowed, Err: ErrBadBusybox, Problem: problem}
	}
	if !bytes.HasPrefix(hdr, []byte(elf.ELFMAG)) {
		return bad(fmt.Sprintf("is not an ELF executable (it starts with % x)", head(hdr, 8)))
	}
	if dynamic, known := hasInterpreter(hdr); known && dynamic {
		return bad("is dynamically linked, and the initrd has no shared libraries")
	}
	return nil
}

// CheckModules checks that dir on h is a directory with a modules.dep.
func CheckModules(ctx context.Context, h host.Host, dir string) error {
	bad := func(problem string, err error) error {
		return &InputError{Setting: "kernel_modules", Path: dir, Allowed: ModulesAllowed, Err: err, Problem: problem}
	}
	fi, err := h.Stat(ctx, dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return bad("does not exist on the host", fs.ErrNotExist)
	case err != nil:
		return bad(fmt.Sprintf("cannot be read: %v", err), ErrBadModules)
	case !fi.IsDir():
		return bad("is not a directory", ErrBadModules)
	}
	if _, err := h.Stat(ctx, path.Join(dir, "modules.dep")); err != nil {
		return bad("has no modules.dep (run depmod for its release)", ErrBadModules)
	}
	return nil
}

// readHead reads up to n bytes from the start of the regular file p; errors are InputErrors of
// setting, bad being the sentinel for a path that is there but is no file.
func readHead(ctx context.Context, h host.Host, setting, p, allowed string, bad error, n int) ([]byte, error) {
	fail := func(problem string, err error) error {
		return &InputError{Setting: setting, Path: p, Allowed: allowed, Err: err, Problem: problem}
	}
	fi, err := h.Stat(ctx, p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fail("does not exist on the host", fs.ErrNotExist)
	case err != nil:
		return nil, fail(fmt.Sprintf("cannot be read: %v", err), bad)
	case fi.IsDir():
		return nil, fail("is a directory", bad)
	case !fi.Mode().IsRegular():
		return nil, fail("is not a regular file", bad)
	}
	r, err := h.Open(ctx, p)
	if err != nil {
		return nil, fail(fmt.Sprintf("cannot be read: %v", err), bad)
	}
	defer func() { _ = r.Close() }()
	data, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil {
		return nil, fail(fmt.Sprintf("cannot be read: %v", err), bad)
	}
	return data, nil
}

// hasInterpreter reports whether the 64-bit little-endian ELF whose first bytes are b has a
// PT_INTERP program header; known is false when the headers are not within b.
func hasInterpreter(b []byte) (dynamic, known bool) {
	const ehdrSize, phentMin = 64, 56
	if len(b) < ehdrSize || elf.Class(b[elf.EI_CLASS]) != elf.ELFCLASS64 || elf.Data(b[elf.EI_DATA]) != elf.ELFDATA2LSB {
		return false, false
	}
	le := binary.LittleEndian
	phoff, phentsize, phnum := le.Uint64(b[0x20:]), uint64(le.Uint16(b[0x36:])), uint64(le.Uint16(b[0x38:]))
	if phentsize < phentMin || phoff > uint64(len(b)) || phnum*phentsize > uint64(len(b))-phoff {
		return false, false
	}
	for i := range phnum {
		if elf.ProgType(le.Uint32(b[phoff+i*phentsize:])) == elf.PT_INTERP {
			return true, true
		}
	}
	return false, true
}
