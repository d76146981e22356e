package cloudhypervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// A lazy restore runs the guest at once (resume: true), keeps its console history, and a
// snapshot taken right after it waits until the server has every page in (v53 on answers 500
// "still in progress" until then) instead of failing.
func TestLazyRestoreRunsTheGuestAndASnapshotWaitsForIt(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		inst := newInstance(t, hn, 0)
		snap := standby(t, hn, inst)
		hn.setFaults("slow-prefault=700ms")
		if err := hn.driver().CheckLazyRestore(ctx, hn.host()); err != nil {
			t.Fatalf("CheckLazyRestore on this host: %v", err)
		}
		pid, err := hn.driver().RestoreLazily(ctx, hn.host(), inst.cfg, snap)
		if err != nil || pid <= 0 {
			t.Fatalf("RestoreLazily: pid %d, %v", pid, err)
		}
		vm := connect(t, hn, inst)
		wantState(t, vm, vmm.Running)
		if err := vm.Pause(ctx); err != nil {
			t.Fatal(err)
		}
		// What the server answers a snapshot now, before the driver's retries.
		again := filepath.Join(inst.cfg.Dir, "again")
		if err := os.Mkdir(again, 0o700); err != nil {
			t.Fatal(err)
		}
		first := vm.c.put(ctx, "vm.snapshot", vmSnapshotConfig{DestinationURL: "file://" + again})
		if v53 := hn.driver().mustMajor(t, ctx, hn.host()) >= 53; v53 != stillRestoring(first) {
			t.Fatalf("first snapshot after the lazy restore: %v (still in progress expected: %v)", first, v53)
		}
		if first == nil {
			// v52 snapshots at once; the retry below needs an empty directory.
			again = filepath.Join(inst.cfg.Dir, "again2")
			if err := os.Mkdir(again, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if err := vm.Snapshot(ctx, again); err != nil {
			t.Fatalf("Snapshot during the on-demand restore: %v", err)
		}
		if _, err := os.Stat(filepath.Join(again, vmm.MemoryFile)); err != nil {
			t.Errorf("the retried snapshot wrote no memory file: %v", err)
		}
		if err := vm.Quit(ctx); err != nil {
			t.Fatal(err)
		}
		wantGone(t, hn, inst)
		if got := readConsole(t, inst.cfg.ConsoleLog); got != started {
			t.Errorf("console after the lazy restore %q, want the history %q", got, started)
		}
	})
}

func (d *Driver) mustMajor(t *testing.T, ctx context.Context, h host.Host) int {
	t.Helper()
	v, err := d.Version(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	major, err := majorVersion(v)
	if err != nil {
		t.Fatal(err)
	}
	return major
}

// A host where the VMM could get no userfaultfd is told before any VMM starts, as
// ErrNoLazyRestore, so that the caller restores eagerly.
func TestLazyRestoreWithoutUserfaultfdStartsNothing(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		inst := newInstance(t, hn, 0)
		snap := standby(t, hn, inst)
		d := *hn.driver()
		d.Userfaultfd = func(context.Context, host.Host) error { return errors.New("no userfaultfd here") }
		if err := d.CheckLazyRestore(ctx, hn.host()); err == nil || !strings.Contains(err.Error(), "no userfaultfd here") {
			t.Errorf("CheckLazyRestore: %v", err)
		}
		_, err := d.RestoreLazily(ctx, hn.host(), inst.cfg, snap)
		if !errors.Is(err, vmm.ErrNoLazyRestore) || !strings.Contains(err.Error(), "no userfaultfd here") {
			t.Fatalf("RestoreLazily: %v, want ErrNoLazyRestore with the reason", err)
		}
		wantGone(t, hn, inst)
	})
}

// A lazy restore that the server fails is an error of its own (not ErrNoLazyRestore: the VMM
// tried), and leaves no process behind; the snapshot is untouched.
func TestLazyRestoreFailureLeavesNoProcess(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		inst := newInstance(t, hn, 0)
		snap := standby(t, hn, inst)
		hn.setFaults("restore-fail")
		_, err := hn.driver().RestoreLazily(testContext(t), hn.host(), inst.cfg, snap)
		if err == nil || errors.Is(err, vmm.ErrNoLazyRestore) || !strings.Contains(err.Error(), "The VM could not be restored") {
			t.Errorf("RestoreLazily: %v", err)
		}
		wantGone(t, hn, inst)
		if _, err := os.Stat(filepath.Join(snap, vmm.MemoryFile)); err != nil {
			t.Errorf("snapshot after the failed restore: %v", err)
		}
	})
}

func TestLazyVersionGate(t *testing.T) {
	for v, ok := range map[string]bool{"51.1.0": false, "v51.2": false, "52.0.0": true, "v53.0-246-gae44c2971": true} {
		if err := lazyVersion(v); (err == nil) != ok {
			t.Errorf("lazyVersion(%q) = %v", v, err)
		}
	}
}

func TestStillRestoringIsOnlyThatAnswer(t *testing.T) {
	for err, want := range map[error]bool{
		&APIError{Action: "vm.snapshot", Status: 500, Messages: []string{"Error from API", "The VM could not be snapshotted", "VM on-demand memory restore is still in progress"}}: true,
		&APIError{Action: "vm.snapshot", Status: 500, Messages: []string{"Error from API", "The VM could not be snapshotted", "Trying to snapshot while VM is running"}}:           false,
		&APIError{Action: "vm.snapshot", Status: 400, Messages: []string{"VM on-demand memory restore is still in progress"}}:                                                      false,
		errors.New("VM on-demand memory restore is still in progress"):                                                                                                             false,
	} {
		if got := stillRestoring(err); got != want {
			t.Errorf("stillRestoring(%v) = %v", err, got)
		}
	}
}

// userfaultfdHost answers the looks CheckUserfaultfd makes as a host with the given setup would.
type userfaultfdHost struct {
	host.Local
	dev            fs.FileMode // 0: no /dev/userfaultfd
	devAccessible  bool
	sysctl         string // "": no sysctl (no userfaultfd in the kernel)
	capEffPtraceOn bool
}

type fakeInfo struct {
	fs.FileInfo
	mode fs.FileMode
}

func (f fakeInfo) Mode() fs.FileMode { return f.mode }

func (h userfaultfdHost) Stat(ctx context.Context, path string) (fs.FileInfo, error) {
	if path != devUserfaultfd {
		return h.Local.Stat(ctx, path)
	}
	if h.dev == 0 {
		return nil, &fs.PathError{Op: "stat", Path: path, Err: fs.ErrNotExist}
	}
	return fakeInfo{mode: h.dev}, nil
}

func (h userfaultfdHost) Run(_ context.Context, _ io.Reader, argv ...string) ([]byte, error) {
	if argv[0] == "test" && !h.devAccessible {
		return nil, errors.New("exit status 1")
	}
	return nil, nil
}

func (h userfaultfdHost) ReadFile(ctx context.Context, path string) ([]byte, error) {
	switch path {
	case unprivilegedSysctl:
		if h.sysctl == "" {
			return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
		}
		return []byte(h.sysctl + "\n"), nil
	case "/proc/self/status":
		caps := uint64(0)
		if h.capEffPtraceOn {
			caps = 1 << capSysPtrace
		}
		return []byte(fmt.Sprintf("Name:\tsftp-server\nCapEff:\t%016x\n", caps)), nil
	}
	return h.Local.ReadFile(ctx, path)
}

func TestCheckUserfaultfd(t *testing.T) {
	char := fs.ModeDevice | fs.ModeCharDevice | 0o600
	tests := []struct {
		name string
		h    userfaultfdHost
		want string // "" when usable
	}{
		{"the device, usable", userfaultfdHost{dev: char, devAccessible: true}, ""},
		{"the device refused, the sysctl on", userfaultfdHost{dev: char, sysctl: "1"}, ""},
		{"no device, the sysctl off, CAP_SYS_PTRACE", userfaultfdHost{sysctl: "0", capEffPtraceOn: true}, ""},
		{"no device, the sysctl off, unprivileged", userfaultfdHost{sysctl: "0"}, "vm.unprivileged_userfaultfd is 0 and it lacks CAP_SYS_PTRACE"},
		{"the device refused, unprivileged", userfaultfdHost{dev: char, sysctl: "0"}, "not readable and writable by the user the VMM runs as"},
		{"no userfaultfd in the kernel", userfaultfdHost{}, "the kernel has no userfaultfd(2)"},
		{"not a device", userfaultfdHost{dev: 0o600, devAccessible: true}, "is not a character device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckUserfaultfd(context.Background(), tt.h)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("%v, want usable", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("%v, want %q", err, tt.want)
			}
		})
	}
}
