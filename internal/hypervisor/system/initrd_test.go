package system

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
	"github.com/klauspost/compress/gzip"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

type cpioEntry struct {
	mode cpio.FileMode
	data []byte
}

// readInitrd reads a gzip-compressed newc archive back, by entry name.
func readInitrd(t *testing.T, file string) map[string]cpioEntry {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("initrd is not gzip: %v", err)
	}
	r := cpio.NewReader(zr)
	entries := map[string]cpioEntry{}
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("initrd is not a cpio archive: %v", err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := entries[h.Name]; dup {
			t.Errorf("initrd has %s twice", h.Name)
		}
		entries[h.Name] = cpioEntry{mode: h.Mode, data: data}
	}
	return entries
}

// checkInitrdLayout checks what every initrd needs, whatever the kernel: the init, busybox,
// the mount points, and each module of the load list, dependencies first.
func checkInitrdLayout(t *testing.T, entries map[string]cpioEntry, busybox []byte, release string) []string {
	t.Helper()
	for _, d := range initrdDirs {
		for ; d != "."; d = path.Dir(d) {
			if e, ok := entries[d]; !ok || !e.mode.IsDir() {
				t.Errorf("initrd has no directory %s", d)
			}
		}
	}
	init := entries["init"]
	if string(init.data) != guestInit() || init.mode.Perm() != 0o755 || !init.mode.IsRegular() {
		t.Errorf("/init is not the guest init with mode 0755 (mode %v, %d bytes)", init.mode, len(init.data))
	}
	if bb := entries[initrdBusybox]; !bytes.Equal(bb.data, busybox) || bb.mode.Perm() != 0o755 {
		t.Errorf("/%s is not the configured busybox with mode 0755", initrdBusybox)
	}
	if pb := entries[initrdPowerButton]; string(pb.data) != powerButtonHandler || pb.mode.Perm() != 0o755 {
		t.Errorf("/%s is not the power button handler", initrdPowerButton)
	}
	if hp := entries[initrdHotplug]; string(hp.data) != hotplugHandler || hp.mode.Perm() != 0o755 {
		t.Errorf("/%s is not the hotplug handler", initrdHotplug)
	}
	if !strings.Contains(string(entries["init"].data), "uevent /"+initrdHotplug+" ") {
		t.Errorf("the init does not start uevent with /%s", initrdHotplug)
	}
	list := strings.Fields(string(entries[initrdModulesList].data))
	for _, m := range list {
		if !strings.HasPrefix(m, "/lib/modules/"+release+"/") || !strings.HasSuffix(m, ".ko") {
			t.Errorf("module %s is not an uncompressed module under /lib/modules/%s", m, release)
		}
		if err := checkModule(entries[strings.TrimPrefix(m, "/")].data, release); err != nil {
			t.Errorf("module %s in the initrd: %v", m, err)
		}
	}
	return list
}

func TestInitrdHoldsInitBusyboxAndModules(t *testing.T) {
	dir := t.TempDir()
	cfg := fakeSystem(t, dir)
	a, err := Prepare(context.Background(), host.Local{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	busybox, _ := os.ReadFile(cfg.Busybox)
	entries := readInitrd(t, a.Initrd)
	got := checkInitrdLayout(t, entries, busybox, fakeRelease)
	// Dependencies first; overlay and virtio_mmio are built in; unrelated modules stay out;
	// compressed modules are stored decompressed.
	want := []string{
		"kernel/crypto/crc32c_generic.ko",
		"kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio.ko",
		"kernel/drivers/virtio/virtio_pci.ko",
		"kernel/drivers/block/virtio_blk.ko",
		"kernel/drivers/char/hw_random/virtio-rng.ko",
		"kernel/fs/erofs/erofs.ko",
		"kernel/fs/mbcache.ko",
		"kernel/fs/jbd2/jbd2.ko",
		"kernel/fs/ext4/ext4.ko",
	}
	for i := range want {
		want[i] = "/lib/modules/" + fakeRelease + "/" + want[i]
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("load order:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !bytes.Equal(entries[strings.TrimPrefix(want[9], "/")].data, fakeModule("ext4", fakeRelease)) {
		t.Errorf("ext4.ko.xz was not stored decompressed")
	}
}

func TestInitrdOfTheDebianKernel(t *testing.T) {
	vmlinuz, modules := testutil.Kernel(t)
	busybox, err := os.ReadFile(DefaultBusybox)
	testutil.Require(t, err == nil, DefaultBusybox+" is not installed")
	a, err := Prepare(context.Background(), host.Local{}, Config{Kernel: vmlinuz, Modules: modules, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if a.KernelRelease != filepath.Base(modules) {
		t.Errorf("KernelRelease = %q, want %q", a.KernelRelease, filepath.Base(modules))
	}
	list := checkInitrdLayout(t, readInitrd(t, a.Initrd), busybox, a.KernelRelease)
	loaded := map[string]bool{}
	for _, m := range list {
		loaded[moduleName(m)] = true
	}
	for _, m := range []string{"crc32c_generic", "virtio_pci", "virtio_blk", "erofs", "ext4", "overlay", "virtio_balloon", "virtio_mem"} {
		if !loaded[m] {
			t.Errorf("the Debian kernel's initrd does not load %s", m)
		}
	}
}

func TestInitrdWithoutModules(t *testing.T) {
	cfg := fakeSystem(t, t.TempDir())
	cfg.Modules = ""
	a, err := Prepare(context.Background(), host.Local{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	busybox, _ := os.ReadFile(cfg.Busybox)
	entries := readInitrd(t, a.Initrd)
	if list := checkInitrdLayout(t, entries, busybox, fakeRelease); len(list) != 0 {
		t.Errorf("modules listed without a modules directory: %v", list)
	}
	for name := range entries {
		if strings.HasPrefix(name, "lib/modules") {
			t.Errorf("initrd has %s without a modules directory", name)
		}
	}
}

func TestGuestInitHasEveryContractValue(t *testing.T) {
	script := guestInit()
	if left := regexp.MustCompile(`@[A-Z_]+@`).FindAllString(script, -1); len(left) > 0 {
		t.Errorf("placeholders left in the init: %v", left)
	}
	for _, v := range []string{SerialRootfs, SerialOverlay, SerialConfig, ConfigArgvDir, ConfigEnvDir, ConfigWorkdir,
		ConfigHostname, ConfigNetAddress, ConfigNetGateway, ConfigNetDNS, ConfigNetMAC,
		ConfigVolumesDir, ConfigVolumeSerial, ConfigVolumePath, ConfigVolumeReadOnly, MarkerStarted, MarkerExited, MarkerError, "/" + initrdModulesList} {
		if !strings.Contains(script, v) {
			t.Errorf("the init does not use %q", v)
		}
		// The values are substituted into single- and double-quoted shell words.
		if strings.ContainsAny(v, `'"$`+"`\\") {
			t.Errorf("contract value %q has shell quoting characters", v)
		}
	}
}

func TestCheckBusybox(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		wantMsg string
	}{
		{"static", makeELF(elf.EM_X86_64, elfSegment{elf.PT_LOAD, []byte("code")}), ""},
		{"dynamic", makeELF(elf.EM_X86_64, elfSegment{elf.PT_INTERP, []byte("/lib64/ld-linux-x86-64.so.2\x00")}),
			"dynamically linked (interpreter /lib64/ld-linux-x86-64.so.2)"},
		{"other machine", makeELF(elf.EM_AARCH64), "built for EM_AARCH64, the kernel for EM_X86_64"},
		{"not an ELF", []byte("#!/bin/sh\n"), "not an ELF executable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkBusybox(tt.data, elf.EM_X86_64)
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrBadBusybox) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %v, want ErrBadBusybox saying %q", err, tt.wantMsg)
			}
		})
	}
}

func TestBuildInitrdIsReproducible(t *testing.T) {
	files := []initrdFile{{name: "init", mode: 0o755, data: []byte("x")}, {name: "a/b/c", mode: 0o644, data: []byte("y")}}
	first, err := buildInitrd([]string{"dev"}, files)
	if err != nil {
		t.Fatal(err)
	}
	reversed := []initrdFile{files[1], files[0]}
	second, err := buildInitrd([]string{"dev"}, reversed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Error("the same files gave two different initrds")
	}
}
