package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// The test guest boots the project's kernel and initrd with a tiny busybox image whose program
// reports on the console what the tests check: its disks, a write to each disk whose serial is in
// WRITE_SERIALS, then a counter with the guest's memory.
const guestProgram = `echo "test-guest: boot"
for s in /sys/block/vd*/serial; do
	d=${s%/serial}
	echo "test-guest: disk ${d##*/} serial=$(cat "$s") ro=$(cat "$d/ro")"
done
for s in /sys/block/vd*/serial; do
	case " $WRITE_SERIALS " in *" $(cat "$s") "*) ;; *) continue ;; esac
	d=${s%/serial}
	if out=$(echo "test-guest wrote $(cat "$s")" | dd of=/dev/${d##*/} bs=512 count=1 conv=sync,fsync 2>&1); then
		echo "test-guest: write $(cat "$s") ok"
	else
		echo "test-guest: write $(cat "$s") failed: $out"
	fi
done
if [ "${FILL_MB:-0}" != 0 ]; then
	mkdir -p /fill && mount -t tmpfs -o size=$((FILL_MB + 1))m fill /fill
	yes hypeman-fill | head -c $((FILL_MB * 1048576)) > /fill/data
	echo "test-guest: filled $(md5sum < /fill/data | cut -c1-32)"
fi
i=0
while :; do
	i=$((i + 1))
	echo "test-guest: count $i memtotal_kb $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) cpus_online $(cat /sys/devices/system/cpu/online)"
	[ "$i" = "$COUNT_TO" ] && exit 0
	sleep 0.2
done
`

// guestApplets are the busybox applets the program uses.
var guestApplets = []string{"sh", "cat", "awk", "sleep", "echo", "dd"}

// shared holds what every test boots: built once, removed by TestMain.
var shared struct {
	once   sync.Once
	err    error
	dir    string
	sys    *system.Artifacts
	rootfs string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// requireGuest skips (fails in CI) when the tools a real guest needs are missing, and prepares
// the kernel, initrd and image once. It skips under -short.
func requireGuest(t *testing.T) {
	t.Helper()
	testutil.SkipShort(t, "a VM under QEMU")
	testutil.RequireTool(t, Binary)
	testutil.RequireTool(t, "mkfs.erofs")
	testutil.RequireTool(t, "mkfs.ext4")
	_, err := os.Stat(system.DefaultBusybox)
	testutil.Require(t, err == nil, "no static busybox at "+system.DefaultBusybox)
	testutil.VMSlot(t)
	vmlinuz, modules := testutil.Kernel(t)
	shared.once.Do(func() { shared.err = prepareShared(vmlinuz, modules) })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
}

func prepareShared(vmlinuz, modules string) error {
	dir, err := os.MkdirTemp("", "qemu-test-")
	if err != nil {
		return err
	}
	shared.dir = dir
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	shared.sys, err = system.Prepare(ctx, host.Local{}, system.Config{
		Kernel: vmlinuz, Modules: modules, Busybox: system.DefaultBusybox, CacheDir: filepath.Join(dir, "system"),
	})
	if err != nil {
		return fmt.Errorf("prepare kernel and initrd: %w", err)
	}
	tree := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(tree, "bin"), 0o755); err != nil {
		return err
	}
	bb, err := os.ReadFile(system.DefaultBusybox)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tree, "bin", "busybox"), bb, 0o755); err != nil {
		return err
	}
	for _, applet := range guestApplets {
		if err := os.Symlink("busybox", filepath.Join(tree, "bin", applet)); err != nil {
			return err
		}
	}
	shared.rootfs = filepath.Join(dir, "rootfs.erofs")
	return run("mkfs.erofs", "--quiet", shared.rootfs, tree)
}

// guestConfig makes an instance directory for one VM: overlay and config disks, and the
// vmm.Config that boots it. countTo ends the program after that many counts (0: never); env
// adds variables to the program's (FILL_MB=N: it first fills N MiB of a tmpfs, in memory).
func guestConfig(t *testing.T, hotplug int64, countTo int, env ...string) vmm.Config {
	t.Helper()
	requireGuest(t)
	dir := t.TempDir()
	overlay := filepath.Join(dir, "overlay.raw")
	if err := os.Truncate(createEmpty(t, overlay), 64*mib); err != nil {
		t.Fatal(err)
	}
	if err := run("mkfs.ext4", "-q", "-F", overlay); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, "config")
	files := map[string]string{
		system.ConfigArgvDir + "/0000": "/bin/sh",
		system.ConfigArgvDir + "/0001": "-c",
		system.ConfigArgvDir + "/0002": guestProgram,
		system.ConfigEnvDir + "/0000":  "PATH=/bin",
		system.ConfigEnvDir + "/0001":  "COUNT_TO=" + strconv.Itoa(countTo),
		system.ConfigHostname:          "test-guest",
	}
	for i, e := range env {
		files[fmt.Sprintf("%s/%04d", system.ConfigEnvDir, 2+i)] = e
	}
	for name, data := range files {
		p := filepath.Join(tree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	config := filepath.Join(dir, "config.erofs")
	if err := run("mkfs.erofs", "--quiet", config, tree); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := vmm.Config{
		Dir: dir, Kernel: shared.sys.Kernel, Initrd: shared.sys.Initrd, Cmdline: system.BaseCmdline,
		VCPUs: 1, MemoryBytes: 256 * mib, HotplugBytes: hotplug,
		Disks: []vmm.Disk{
			{Path: shared.rootfs, Serial: system.SerialRootfs, ReadOnly: true},
			{Path: overlay, Serial: system.SerialOverlay},
			{Path: config, Serial: system.SerialConfig, ReadOnly: true},
		},
		ConsoleLog: filepath.Join(dir, "logs", "console.log"), Accelerator: "tcg",
	}
	t.Cleanup(func() { killLeftovers(t, dir) })
	return cfg
}

func createEmpty(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func run(argv ...string) error {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, out)
	}
	return nil
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// qemuPIDs are the live QEMU processes whose command line names dir.
func qemuPIDs(dir string) []int {
	var pids []int
	for _, p := range testutil.Processes() {
		if len(p.Args) > 0 && strings.HasPrefix(p.Args[0], Binary) && p.Mentions(dir) {
			pids = append(pids, p.PID)
		}
	}
	return pids
}

func killLeftovers(t *testing.T, dir string) {
	for _, pid := range qemuPIDs(dir) {
		t.Errorf("QEMU %d was left running for %s; killing it", pid, dir)
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
	}
}

// console is what the guest printed so far, as lines without carriage returns.
func console(t *testing.T, cfg vmm.Config) []string {
	t.Helper()
	b, err := os.ReadFile(cfg.ConsoleLog)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n")
}

// counts are the program's counter values and the memory it saw with each, in console order.
func counts(t *testing.T, cfg vmm.Config) (values []int, memKB []int64) {
	t.Helper()
	for _, line := range console(t, cfg) {
		var n int
		var kb int64
		if _, err := fmt.Sscanf(line, "test-guest: count %d memtotal_kb %d", &n, &kb); err == nil {
			values, memKB = append(values, n), append(memKB, kb)
		}
	}
	return values, memKB
}

// waitConsole polls the console until ok holds, failing the test after timeout.
func waitConsole(t *testing.T, cfg vmm.Config, timeout time.Duration, what string, ok func(lines []string) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		lines := console(t, cfg)
		if ok(lines) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; console ends with:\n%s", timeout, what, tail(lines, 15))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitCount waits until the counter has reached at least n and returns the last value.
func waitCount(t *testing.T, cfg vmm.Config, n int) int {
	t.Helper()
	last := 0
	waitConsole(t, cfg, 90*time.Second, fmt.Sprintf("count %d", n), func([]string) bool {
		values, _ := counts(t, cfg)
		if len(values) > 0 {
			last = values[len(values)-1]
		}
		return last >= n
	})
	return last
}

func lastCount(t *testing.T, cfg vmm.Config) int {
	values, _ := counts(t, cfg)
	if len(values) == 0 {
		return 0
	}
	return values[len(values)-1]
}

func tail(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func countLines(lines []string, s string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// restoreRunning restores the snapshot in snap for cfg and resumes the guest.
func restoreRunning(t *testing.T, cfg vmm.Config, snap string) (int, vmm.VM) {
	t.Helper()
	pid, err := New().Restore(testContext(t), host.Local{}, cfg, snap)
	if err != nil {
		t.Fatal(err)
	}
	vm := connect(t, cfg)
	if err := vm.Resume(testContext(t)); err != nil {
		t.Fatal(err)
	}
	return pid, vm
}

// assertContinued checks that the guest booted once and that its counter never restarted: it ran
// on through whatever the test did to it (a snapshot and restore, a resize).
func assertContinued(t *testing.T, cfg vmm.Config) {
	t.Helper()
	if n := countLines(console(t, cfg), "test-guest: boot"); n != 1 {
		t.Errorf("the guest booted %d times, want once", n)
	}
	values, _ := counts(t, cfg)
	for i := 1; i < len(values); i++ {
		if values[i] != values[i-1]+1 {
			t.Fatalf("the counter went from %d to %d: the guest did not continue", values[i-1], values[i])
		}
	}
}

// waitGone waits until QEMU for cfg has exited.
func waitGone(t *testing.T, cfg vmm.Config, pid int, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := waitExit(ctx, host.Local{}, pid, cfg.Dir); err != nil {
		t.Fatalf("QEMU did not exit: %v; console ends with:\n%s", err, tail(console(t, cfg), 15))
	}
}
