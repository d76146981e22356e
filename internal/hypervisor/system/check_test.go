package system

import (
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// elf64 is the start of a 64-bit little-endian x86-64 ELF with one program header of each type.
func elf64(types ...elf.ProgType) []byte {
	const phoff, phentsize = 64, 56
	b := make([]byte, phoff+phentsize*len(types)+16)
	copy(b, elf.ELFMAG)
	b[elf.EI_CLASS], b[elf.EI_DATA], b[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	le := binary.LittleEndian
	le.PutUint16(b[0x10:], uint16(elf.ET_EXEC))
	le.PutUint16(b[0x12:], uint16(elf.EM_X86_64))
	le.PutUint64(b[0x20:], phoff)
	le.PutUint16(b[0x36:], phentsize)
	le.PutUint16(b[0x38:], uint16(len(types)))
	for i, typ := range types {
		le.PutUint32(b[phoff+i*phentsize:], uint32(typ))
	}
	return b
}

// bzImageHeader is a file with a bzImage's boot header magic and nothing else.
func bzImageHeader() []byte {
	b := make([]byte, 4096)
	copy(b[bzMagic:], "HdrS")
	return b
}

func write(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkCase is one path given to a Check function and what it must say.
type checkCase struct {
	name    string
	path    string
	wantErr error  // nil: accepted
	want    string // in the message, besides the setting, the path and what is allowed
}

func runChecks(t *testing.T, setting, allowed string, check func(context.Context, host.Host, string) error, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := check(context.Background(), host.Local{}, tc.path)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ie *InputError
			if !errors.Is(err, tc.wantErr) || !errors.As(err, &ie) || ie.Setting != setting {
				t.Fatalf("error %v; want an InputError of %s wrapping %v", err, setting, tc.wantErr)
			}
			for _, w := range []string{setting + ` "` + tc.path + `"`, tc.want, "allowed: " + allowed} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q: %v", w, err)
				}
			}
		})
	}
}

func TestCheckKernelKnowsAKernelByItsHeader(t *testing.T) {
	dir := t.TempDir()
	runChecks(t, "kernel", KernelAllowed, CheckKernel, []checkCase{
		{"a bzImage", write(t, dir, "vmlinuz", bzImageHeader()), nil, ""},
		{"an ELF vmlinux", write(t, dir, "vmlinux", elf64(elf.PT_LOAD, elf.PT_NOTE)), nil, ""},
		{"a text file", write(t, dir, "notes", []byte("hello\n")), ErrNotKernel, `no "HdrS" boot header at 0x202; the file starts with 68 65 6c 6c 6f 0a`},
		{"a file too short for the header", write(t, dir, "short", bzImageHeader()[:0x203]), ErrNotKernel, "neither an ELF vmlinux nor a bzImage"},
		{"a missing file", filepath.Join(dir, "missing"), fs.ErrNotExist, "does not exist on the host"},
		{"a directory", dir, ErrNotKernel, "is a directory"},
	})
}

func TestCheckKernelAcceptsTheTestKernel(t *testing.T) {
	vmlinuz, _ := testutil.Kernel(t)
	if err := CheckKernel(context.Background(), host.Local{}, vmlinuz); err != nil {
		t.Fatal(err)
	}
}

func TestCheckBusyboxWantsAStaticELF(t *testing.T) {
	dir := t.TempDir()
	cases := []checkCase{
		{"a static ELF", write(t, dir, "static", elf64(elf.PT_LOAD, elf.PT_LOAD)), nil, ""},
		{"a dynamic ELF", write(t, dir, "dynamic", elf64(elf.PT_PHDR, elf.PT_INTERP, elf.PT_LOAD)), ErrBadBusybox, "is dynamically linked"},
		{"a script", write(t, dir, "script", []byte("#!/bin/sh\n")), ErrBadBusybox, "is not an ELF executable"},
		{"a missing file", filepath.Join(dir, "missing"), fs.ErrNotExist, "does not exist on the host"},
		{"a directory", dir, ErrBadBusybox, "is a directory"},
	}
	if _, err := os.Stat(DefaultBusybox); err == nil {
		cases = append(cases, checkCase{"the host's busybox", DefaultBusybox, nil, ""})
	}
	if dynamicELF("/bin/ls") {
		cases = append(cases, checkCase{"the host's ls", "/bin/ls", ErrBadBusybox, "is dynamically linked"})
	}
	runChecks(t, "busybox", BusyboxAllowed, CheckBusybox, cases)
}

func TestCheckModulesWantsADirectoryWithModulesDep(t *testing.T) {
	good, bare := t.TempDir(), t.TempDir()
	write(t, good, "modules.dep", nil)
	runChecks(t, "kernel_modules", ModulesAllowed, CheckModules, []checkCase{
		{"a module directory", good, nil, ""},
		{"a directory without modules.dep", bare, ErrBadModules, "has no modules.dep (run depmod"},
		{"a file", write(t, bare, "file", nil), ErrBadModules, "is not a directory"},
		{"a missing directory", filepath.Join(bare, "missing"), fs.ErrNotExist, "does not exist on the host"},
	})
}

// dynamicELF reports whether p is an ELF with an interpreter, read whole by debug/elf.
func dynamicELF(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer func() { _ = f.Close() }()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return true
		}
	}
	return false
}
