package system

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
)

// countingHost counts how often the kernel is read, which happens once per build.
type countingHost struct {
	host.Local
	kernel string
	reads  atomic.Int32
}

func (h *countingHost) ReadFile(ctx context.Context, p string) ([]byte, error) {
	if p == h.kernel {
		h.reads.Add(1)
	}
	return h.Local.ReadFile(ctx, p)
}

func fileHash(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func TestPrepareNamesArtifactsByContentHash(t *testing.T) {
	cfg := fakeSystem(t, t.TempDir())
	a, err := Prepare(context.Background(), host.Local{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := fileHash(t, a.Kernel); got != a.KernelHash || a.Kernel != filepath.Join(cfg.CacheDir, "vmlinux-"+got) {
		t.Errorf("kernel %s, hash %s: want the file named by its sha256 %s", a.Kernel, a.KernelHash, got)
	}
	if got := fileHash(t, a.Initrd); got != a.InitrdHash || a.Initrd != filepath.Join(cfg.CacheDir, "initrd-"+got) {
		t.Errorf("initrd %s, hash %s: want the file named by its sha256 %s", a.Initrd, a.InitrdHash, got)
	}
	vmlinux, _ := os.ReadFile(a.Kernel)
	if string(vmlinux) != string(fakeVmlinux()) {
		t.Error("the cached kernel is not the bzImage's vmlinux")
	}
	if a.KernelRelease != fakeRelease {
		t.Errorf("KernelRelease = %q, want %q", a.KernelRelease, fakeRelease)
	}
}

func TestPrepareOnAWarmCacheDoesNotRebuild(t *testing.T) {
	cfg := fakeSystem(t, t.TempDir())
	h := &countingHost{kernel: cfg.Kernel}
	ctx := context.Background()
	first, err := Prepare(ctx, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	second, err := Prepare(ctx, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("warm Prepare took %v, want well under 100ms", took)
	}
	if *first != *second {
		t.Errorf("warm Prepare returned %+v, first %+v", second, first)
	}
	if n := h.reads.Load(); n != 1 {
		t.Errorf("the kernel was read %d times, want 1 (no rebuild)", n)
	}
}

func TestPrepareRebuildsWhenAnInputChanges(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name          string
		change        func(t *testing.T, cfg Config)
		initrdChanges bool
	}{
		{"touched busybox", func(t *testing.T, cfg Config) {
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(cfg.Busybox, later, later); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"new busybox", func(t *testing.T, cfg Config) {
			writeFile(t, cfg.Busybox, makeELF(elf.EM_X86_64, elfSegment{elf.PT_LOAD, []byte("static busybox, next version")}))
		}, true},
		{"new module", func(t *testing.T, cfg Config) {
			writeFile(t, filepath.Join(cfg.Modules, "kernel/fs/erofs/erofs.ko"), fakeModule("erofs-rebuilt", fakeRelease))
		}, true},
		{"removed artifact", func(t *testing.T, cfg Config) {
			matches, _ := filepath.Glob(filepath.Join(cfg.CacheDir, "initrd-*"))
			for _, m := range matches {
				if err := os.Remove(m); err != nil {
					t.Fatal(err)
				}
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fakeSystem(t, t.TempDir())
			h := &countingHost{kernel: cfg.Kernel}
			before, err := Prepare(ctx, h, cfg)
			if err != nil {
				t.Fatal(err)
			}
			tt.change(t, cfg)
			after, err := Prepare(ctx, h, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if n := h.reads.Load(); n != 2 {
				t.Errorf("the kernel was read %d times, want 2 (one rebuild)", n)
			}
			if (after.InitrdHash != before.InitrdHash) != tt.initrdChanges {
				t.Errorf("initrd hash %s -> %s; want changed = %t", before.InitrdHash, after.InitrdHash, tt.initrdChanges)
			}
			if after.KernelHash != before.KernelHash {
				t.Errorf("kernel hash changed with the same kernel: %s -> %s", before.KernelHash, after.KernelHash)
			}
			if _, err := os.Stat(after.Initrd); err != nil {
				t.Errorf("initrd after the rebuild: %v", err)
			}
		})
	}
}

func TestConcurrentPrepareBuildsOnce(t *testing.T) {
	cfg := fakeSystem(t, t.TempDir())
	h := &countingHost{kernel: cfg.Kernel}
	const callers = 6
	results := make([]*Artifacts, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Prepare(context.Background(), h, cfg)
		}()
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if *results[i] != *results[0] {
			t.Errorf("caller %d got %+v, caller 0 %+v", i, results[i], results[0])
		}
	}
	if n := h.reads.Load(); n != 1 {
		t.Errorf("the kernel was read %d times by %d concurrent callers, want 1", n, callers)
	}
}

func TestPrepareErrorsNameTheInput(t *testing.T) {
	tests := []struct {
		name    string
		change  func(t *testing.T, cfg *Config)
		wantErr error
		wantMsg string
	}{
		{"kernel is not a kernel", func(t *testing.T, cfg *Config) { writeFile(t, cfg.Kernel, []byte("hello")) }, ErrNotKernel, "kernel "},
		{"kernel is missing", func(t *testing.T, cfg *Config) { cfg.Kernel += ".missing" }, os.ErrNotExist, "vmlinuz.missing"},
		{"busybox is dynamic", func(t *testing.T, cfg *Config) {
			writeFile(t, cfg.Busybox, makeELF(elf.EM_X86_64, elfSegment{elf.PT_INTERP, []byte("/lib/ld.so\x00")}))
		}, ErrBadBusybox, "busybox "},
		{"required module missing", func(t *testing.T, cfg *Config) {
			writeFile(t, filepath.Join(cfg.Modules, "modules.builtin"), nil)
		}, ErrMissingModule, "overlay neither built into the kernel"},
		{"modules of another kernel", func(t *testing.T, cfg *Config) {
			writeFile(t, filepath.Join(cfg.Modules, "kernel/fs/erofs/erofs.ko"), fakeModule("erofs", "1.2.3"))
		}, nil, "erofs.ko: built for kernel release 1.2.3, the kernel is " + fakeRelease},
		{"no modules.dep", func(t *testing.T, cfg *Config) {
			if err := os.Remove(filepath.Join(cfg.Modules, "modules.dep")); err != nil {
				t.Fatal(err)
			}
		}, os.ErrNotExist, "run depmod"},
		{"no cache dir", func(t *testing.T, cfg *Config) { cfg.CacheDir = "" }, nil, "must both be set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fakeSystem(t, t.TempDir())
			tt.change(t, &cfg)
			_, err := Prepare(context.Background(), host.Local{}, cfg)
			if err == nil {
				t.Fatal("Prepare succeeded, want an error")
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
