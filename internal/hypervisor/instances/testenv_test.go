package instances

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/qemu"
	"github.com/hypeman/terraform-provider-hypeman/internal/ociimage"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

const imagePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// shared is what every test of the package reuses: one loopback registry holding the busybox
// image, and one system cache so the initrd is built once.
var shared struct {
	once     sync.Once
	err      error
	registry string
	image    string
	sysCache string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.sysCache != "" {
		_ = os.RemoveAll(shared.sysCache)
	}
	if snapshotMemory.path != "" { // kept across benchmarks, removed with the test binary
		_ = os.RemoveAll(filepath.Dir(snapshotMemory.path))
	}
	os.Exit(code)
}

func setupShared() error {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	shared.registry = strings.TrimPrefix(srv.URL, "http://")
	img, err := ociimage.Busybox(ociimage.BusyboxPath, ociimage.Options{})
	if err != nil {
		return err
	}
	shared.image = shared.registry + "/test/busybox:latest"
	ref, err := name.ParseReference(shared.image, name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img); err != nil {
		return err
	}
	shared.sysCache, err = os.MkdirTemp("", "hypeman-system-")
	return err
}

type faults struct {
	mu       sync.Mutex
	snapshot error // returned by Snapshot after the real snapshot has written its files
}

type testEnv struct {
	m        *Manager
	registry string
	faults   *faults
	vmlinuz  string
	modules  string
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	testutil.SkipShort(t, "VMs under QEMU")
	testutil.RequireTool(t, "qemu-system-x86_64")
	testutil.RequireTool(t, "mkfs.erofs")
	testutil.RequireTool(t, "mkfs.ext4")
	testutil.VMSlot(t)
	vmlinuz, modules := testutil.Kernel(t)
	shared.once.Do(func() { shared.err = setupShared() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	env := &testEnv{registry: shared.registry, faults: &faults{}, vmlinuz: vmlinuz, modules: modules}
	env.m = env.manager(t)
	return env
}

// manager makes a Manager on a fresh data directory, with the options configure changes; every
// VMM it leaves is killed at cleanup.
func (env *testEnv) manager(t testing.TB, configure ...func(*Options)) *Manager {
	t.Helper()
	drv := newFaultDriver(qemu.New(), env.faults)
	opts := Options{
		Host: host.Local{}, DataDir: testutil.ShortTempDir(t),
		Drivers: []vmm.Driver{drv}, DefaultHypervisor: "qemu", Accelerator: "tcg",
		System:            system.Config{Kernel: env.vmlinuz, Modules: env.modules, Busybox: "/bin/busybox", CacheDir: shared.sysCache},
		CompressSnapshots: true, StopTimeout: 20 * time.Second,
		Log: func(_ context.Context, msg string, f map[string]any) { t.Logf("%s %v", msg, f) },
	}
	for _, c := range configure {
		c(&opts)
	}
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killVMMs(t, opts.DataDir) })
	return m
}

func (env *testEnv) spec(name string) Spec {
	return Spec{Name: name, Image: shared.image, VCPUs: 1, Memory: 256 * units.MiB, OverlaySize: 256 * units.MiB}
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (env *testEnv) state(t testing.TB, id string) State {
	t.Helper()
	inst, err := env.m.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return inst.State
}

func (env *testEnv) console(t testing.TB, inst *Instance) []byte {
	t.Helper()
	b, _ := os.ReadFile(inst.ConsoleLog)
	return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
}

func (env *testEnv) consoleLen(t testing.TB, inst *Instance) int { return len(env.console(t, inst)) }

// waitProgramExit waits for the program's exit marker and the VMM's exit, checks the exit code,
// and returns what the program printed (of the last boot).
func (env *testEnv) waitProgramExit(t testing.TB, inst *Instance, code int) string {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	exited := system.MarkerExited + strconv.Itoa(code) + "\n"
	for {
		c := env.console(t, inst)
		start := bytes.LastIndex(c, []byte(system.MarkerStarted+"\n"))
		if start >= 0 {
			rest := c[start+len(system.MarkerStarted)+1:]
			if end := bytes.Index(rest, []byte(system.MarkerExited)); end >= 0 && bytes.Contains(rest[end:], []byte("\n")) {
				if !bytes.HasPrefix(rest[end:], []byte(exited)) {
					t.Fatalf("the program did not exit with %d:\n%s", code, rest[end:])
				}
				for env.state(t, inst.ID) != Stopped {
					if time.Now().After(deadline) {
						t.Fatalf("the VMM did not exit after the program ended")
					}
					time.Sleep(100 * time.Millisecond)
				}
				return string(rest[:end])
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no program exit on the console:\n%s", c)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitCount waits until the counter program printed at least n after offset; it returns the
// highest count seen.
func (env *testEnv) waitCount(t testing.TB, inst *Instance, n, offset int) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c := env.console(t, inst)
		if offset <= len(c) {
			best := -1
			for _, m := range countRE.FindAllSubmatch(c[offset:], -1) {
				v, _ := strconv.Atoi(string(m[1]))
				best = max(best, v)
			}
			if best >= n {
				return best
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the counter did not reach %d:\n%s", n, c)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (env *testEnv) deleteAndCheckGone(t testing.TB, inst *Instance) {
	t.Helper()
	if err := env.m.Delete(context.Background(), inst.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(inst.Dir); !os.IsNotExist(err) {
		t.Errorf("instance directory still there: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(env.m.DataDir(), "names", inst.Name)); !os.IsNotExist(err) {
		t.Errorf("name still reserved: %v", err)
	}
	if n := countVMMs(t, inst.Dir); n != 0 {
		t.Errorf("%d VMM processes still running", n)
	}
}

// vmmPIDs lists the processes whose command line mentions dir.
func vmmPIDs(dir string) []int { return testutil.ProcessesMentioning(dir) }

func countVMMs(t testing.TB, dir string) int { return len(vmmPIDs(dir)) }

func killVMMs(t testing.TB, dir string) {
	for _, pid := range vmmPIDs(dir) {
		t.Logf("killing leftover VMM %d", pid)
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
	}
}

// faultDriver wraps the real driver to inject failures at chosen steps.
type faultDriver struct {
	vmm.Driver
	faults *faults
}

// newFaultDriver wraps d, and keeps what d can do beyond vmm.Driver (streamed compression).
func newFaultDriver(d vmm.Driver, f *faults) vmm.Driver {
	fd := &faultDriver{Driver: d, faults: f}
	if _, ok := d.(vmm.CompressedRestorer); ok {
		return &streamFaultDriver{fd}
	}
	return fd
}

func (d *faultDriver) Connect(ctx context.Context, h host.Host, cfg vmm.Config) (vmm.VM, error) {
	vm, err := d.Driver.Connect(ctx, h, cfg)
	if err != nil {
		return nil, err
	}
	fv := &faultVM{VM: vm, faults: d.faults}
	if _, ok := vm.(vmm.StreamCompressor); ok {
		return &streamFaultVM{fv}, nil
	}
	return fv, nil
}

// streamFaultDriver is a faultDriver whose driver restores compressed snapshots itself.
type streamFaultDriver struct{ *faultDriver }

func (d *streamFaultDriver) RestoreCompressed(ctx context.Context, h host.Host, cfg vmm.Config, dir, lz4 string) (int, error) {
	return d.Driver.(vmm.CompressedRestorer).RestoreCompressed(ctx, h, cfg, dir, lz4)
}

// streamFaultVM is a faultVM whose VM compresses its snapshot as it writes it.
type streamFaultVM struct{ *faultVM }

func (v *streamFaultVM) SnapshotCompressed(ctx context.Context, dir, lz4 string) error {
	if err := v.VM.(vmm.StreamCompressor).SnapshotCompressed(ctx, dir, lz4); err != nil {
		return err
	}
	v.faults.mu.Lock()
	defer v.faults.mu.Unlock()
	return v.faults.snapshot
}

type faultVM struct {
	vmm.VM
	faults *faults
}

func (v *faultVM) Snapshot(ctx context.Context, dir string) error {
	if err := v.VM.Snapshot(ctx, dir); err != nil {
		return err
	}
	v.faults.mu.Lock()
	defer v.faults.mu.Unlock()
	return v.faults.snapshot
}

// DiskError passes the real VM's on: wrapped, it would be hidden.
func (v *faultVM) DiskError(ctx context.Context) (*vmm.DiskError, error) {
	if r, ok := v.VM.(vmm.DiskErrorReporter); ok {
		return r.DiskError(ctx)
	}
	return nil, nil
}
