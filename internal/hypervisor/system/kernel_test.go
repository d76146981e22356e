package system

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

func TestVmlinuxExtractsTheDebianBzImage(t *testing.T) {
	vmlinuz, modules := testutil.Kernel(t)
	image, err := os.ReadFile(vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	out, err := vmlinux(image)
	if err != nil {
		t.Fatalf("vmlinux(%s): %v", vmlinuz, err)
	}
	f, err := elf.NewFile(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("extracted kernel is not an ELF: %v", err)
	}
	if f.Machine != elf.EM_X86_64 {
		t.Errorf("machine = %s, want %s", f.Machine, elf.EM_X86_64)
	}
	if err := checkPVH(out); err != nil {
		t.Errorf("extracted kernel: %v", err)
	}
	release, err := kernelRelease(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Base(modules); release != want {
		t.Errorf("release = %q, want %q (the modules directory's name)", release, want)
	}
	// An ELF kernel is used as it is.
	again, err := vmlinux(out)
	if err != nil || !bytes.Equal(again, out) {
		t.Errorf("vmlinux(ELF) changed the image or failed: %v", err)
	}
}

func TestVmlinuxDecompressesEveryPayloadFormat(t *testing.T) {
	want := fakeVmlinux()
	for format := range compressors {
		t.Run(format, func(t *testing.T) {
			image := fakeBzImage(0x20f, format, compress(t, format, want), len(want))
			got, err := vmlinux(image)
			if err != nil {
				t.Fatalf("vmlinux: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("decompressed %d bytes, want the %d-byte ELF", len(got), len(want))
			}
		})
	}
}

func TestVmlinuxRejectsWhatIsNotAPVHKernel(t *testing.T) {
	noPVH := makeELF(elf.EM_X86_64, elfSegment{elf.PT_NOTE, elfNote("GNU", 3, []byte{1, 2, 3, 4})})
	wrongType := makeELF(elf.EM_X86_64, elfSegment{elf.PT_NOTE, elfNote("Xen", 17, []byte{0, 0, 0, 1})})
	vm := fakeVmlinux()
	tests := []struct {
		name    string
		image   []byte
		wantErr error
		wantMsg string
	}{
		{"text file", []byte("#!/bin/sh\necho not a kernel\n" + strings.Repeat("x", 1024)), ErrNotKernel, "neither an ELF vmlinux nor a bzImage (starts with 23 21 2f 62"},
		{"empty file", nil, ErrNotKernel, "neither an ELF vmlinux nor a bzImage"},
		{"ELF without notes", makeELF(elf.EM_X86_64), ErrNoPVH, "ELFCLASS64 EM_X86_64 ELF with 0 notes"},
		{"ELF with other notes", noPVH, ErrNoPVH, "with 1 notes, none of them Xen type 18"},
		{"ELF with another Xen note", wrongType, ErrNoPVH, "none of them Xen type 18"},
		{"bzImage without PVH", fakeBzImage(0x20f, "gzip", compress(t, "gzip", noPVH), len(noPVH)), ErrNoPVH, "vmlinux in the bzImage (gzip payload)"},
		{"bzImage with unknown compression", fakeBzImage(0x20f, "bzip2", []byte("BZh91AY&SY"), 100), ErrNotKernel, "unsupported compression (starts with 42 5a 68"},
		{"bzImage of old boot protocol", fakeBzImage(0x206, "gzip", compress(t, "gzip", vm), len(vm)), ErrNotKernel, "boot protocol 2.06"},
		{"bzImage whose payload is not an ELF", fakeBzImage(0x20f, "gzip", compress(t, "gzip", []byte("plain data")), 10), ErrNotKernel, "payload is not an ELF"},
		{"bzImage with a wrong size trailer", fakeBzImage(0x20f, "zstd", compress(t, "zstd", vm), len(vm)+1), nil, "its trailer says"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := vmlinux(tt.image)
			if err == nil {
				t.Fatal("vmlinux succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %q is not %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
		})
	}
}

func TestKernelReleaseSkipsFormatStrings(t *testing.T) {
	got, err := kernelRelease(fakeVmlinux())
	if err != nil || got != fakeRelease {
		t.Errorf("kernelRelease = %q, %v; want %q", got, err, fakeRelease)
	}
	if _, err := kernelRelease(makeELF(elf.EM_X86_64)); !errors.Is(err, ErrNotKernel) {
		t.Errorf("kernelRelease without a banner: %v, want ErrNotKernel", err)
	}
}
