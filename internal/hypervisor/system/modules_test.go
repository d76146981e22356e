package system

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// checkDependenciesFirst fails unless every module in order comes after all of its
// dependencies and appears once.
func checkDependenciesFirst(t *testing.T, ix *moduleIndex, order []string) {
	t.Helper()
	pos := map[string]int{}
	for i, p := range order {
		if _, dup := pos[p]; dup {
			t.Errorf("%s listed twice", p)
		}
		pos[p] = i
	}
	for i, p := range order {
		for _, d := range ix.deps[p] {
			j, ok := pos[d]
			if !ok {
				t.Errorf("%s needs %s, which is not loaded", p, d)
			} else if j > i {
				t.Errorf("%s (at %d) is loaded before its dependency %s (at %d)", p, i, d, j)
			}
		}
	}
}

func TestLoadOrderOfTheDebianKernel(t *testing.T) {
	_, modules := testutil.Kernel(t)
	dep, err := os.ReadFile(filepath.Join(modules, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	builtin, err := os.ReadFile(filepath.Join(modules, "modules.builtin"))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := parseModuleIndex(dep, builtin)
	if err != nil {
		t.Fatal(err)
	}
	order, err := ix.loadOrder(guestModules)
	if err != nil {
		t.Fatal(err)
	}
	checkDependenciesFirst(t, ix, order)
	loaded := map[string]bool{}
	for _, p := range order {
		loaded[moduleName(p)] = true
	}
	for _, m := range guestModules {
		if !loaded[m.name] && !ix.builtin[m.name] && m.required {
			t.Errorf("required module %s is neither loaded nor built in", m.name)
		}
	}
	// busybox insmod ignores soft dependencies, so ext4's crc32c must be listed by itself.
	if !loaded["crc32c_generic"] {
		t.Errorf("crc32c_generic is not in the load order %v", order)
	}
}

func TestLoadOrder(t *testing.T) {
	const dep = `kernel/a.ko: kernel/b.ko kernel/c.ko
kernel/b.ko: kernel/c.ko
kernel/c.ko:
kernel/d-e.ko.xz: kernel/c.ko
kernel/loop1.ko: kernel/loop2.ko
kernel/loop2.ko: kernel/loop1.ko
`
	ix, err := parseModuleIndex([]byte(dep), []byte("kernel/builtin.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		wanted  []guestModule
		want    []string
		wantErr error
		wantMsg string
	}{
		{"dependencies come first", []guestModule{{name: "a", required: true}}, []string{"kernel/c.ko", "kernel/b.ko", "kernel/a.ko"}, nil, ""},
		{"shared dependencies are loaded once", []guestModule{{name: "b"}, {name: "d_e"}, {name: "a"}}, []string{"kernel/c.ko", "kernel/b.ko", "kernel/d-e.ko.xz", "kernel/a.ko"}, nil, ""},
		{"built-in modules are skipped", []guestModule{{name: "builtin", required: true}, {name: "c"}}, []string{"kernel/c.ko"}, nil, ""},
		{"missing optional modules are skipped", []guestModule{{name: "absent"}, {name: "c"}}, []string{"kernel/c.ko"}, nil, ""},
		{"missing required modules fail", []guestModule{{name: "absent", required: true}, {name: "gone", required: true}}, nil, ErrMissingModule, "absent, gone neither built into the kernel"},
		{"dependency cycles fail", []guestModule{{name: "loop1"}}, nil, nil, "dependency cycle: kernel/loop1.ko -> kernel/loop2.ko -> kernel/loop1.ko"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ix.loadOrder(tt.wanted)
			if tt.wantMsg != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantMsg) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("err = %v, want %v saying %q", err, tt.wantErr, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("order = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/fs/ext4/ext4.ko":                      "ext4",
		"kernel/drivers/char/hw_random/virtio-rng.ko": "virtio_rng",
		"kernel/crypto/crc32c_generic.ko.zst":         "crc32c_generic",
		"kernel/fs/erofs/erofs.ko.xz":                 "erofs",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckModuleRejectsOtherKernels(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		wantMsg string
	}{
		{"same release", fakeModule("a", fakeRelease), ""},
		{"other release", fakeModule("a", "9.9.8-test"), "built for kernel release 9.9.8-test, the kernel is " + fakeRelease},
		{"release with the same prefix", fakeModule("a", fakeRelease+"-rt"), "built for kernel release " + fakeRelease + "-rt"},
		{"not an ELF", []byte("vermagic=" + fakeRelease + " SMP"), "not an ELF object"},
		{"no vermagic", []byte("\x7fELF no modinfo"), "no vermagic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkModule(tt.data, fakeRelease)
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %v, want one saying %q", err, tt.wantMsg)
			}
		})
	}
}
