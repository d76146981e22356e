package system

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// Booting real guests under QEMU TCG with nothing but the boot contract: the disks the manager
// would build, the kernel, initrd and BaseCmdline from Prepare.

// bootTimeout bounds one boot, from QEMU's start to the guest's power-off.
const bootTimeout = 60 * time.Second

// showScript prints, hex-encoded so that the console cannot blur them, each argument it got,
// its environment exactly as exec passed it (/proc/$$/environ, before the shell adds anything),
// its working directory and the hostname.
const showScript = `#!/bin/sh
hex() { od -An -tx1 -v | tr -d ' \n'; }
printf 'argv0=%s\n' "$0"
for a in "$@"; do printf 'arg=%s\n' "$(printf '%s' "$a" | hex)"; done
printf 'env=%s\n' "$(hex </proc/$$/environ)"
printf 'cwd=%s\n' "$(pwd -P)"
printf 'hostname=%s\n' "$(hostname)"
exit "${SHOW_EXIT:-0}"
`

// requireGuestTools skips (fails in CI) unless QEMU, the erofs and ext4 tools and busybox exist;
// it skips under -short.
func requireGuestTools(t *testing.T) {
	t.Helper()
	testutil.SkipShort(t, "a VM under QEMU")
	for _, tool := range []string{"qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4"} {
		testutil.RequireTool(t, tool)
	}
	_, err := os.Stat(DefaultBusybox)
	testutil.Require(t, err == nil, DefaultBusybox+" is not installed")
}

// prepareGuest builds the kernel, initrd and rootfs every guest of a test boots; it skips
// without the tools.
func prepareGuest(t *testing.T) (*Artifacts, string) {
	t.Helper()
	requireGuestTools(t)
	testutil.VMSlot(t)
	vmlinuz, modules := testutil.Kernel(t)
	dir := t.TempDir()
	a, err := Prepare(context.Background(), host.Local{}, Config{Kernel: vmlinuz, Modules: modules, CacheDir: dir + "/system"})
	if err != nil {
		t.Fatal(err)
	}
	return a, buildRootfs(t, dir)
}

// buildRootfs makes an erofs image of a tiny root: busybox, /usr/local/bin/show, /opt/tools/show
// as an absolute symbolic link to it, /app as an absolute link to /srv/app and /srv/up as a
// relative link climbing past the root to /mnt/escape. Such links only resolve correctly inside
// the guest's root, which is what they test.
func buildRootfs(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "rootfs")
	busybox, err := os.ReadFile(DefaultBusybox)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "bin/busybox"), busybox)
	writeFile(t, filepath.Join(root, "usr/local/bin/show"), []byte(showScript))
	for _, f := range []string{"bin/busybox", "usr/local/bin/show"} {
		if err := os.Chmod(filepath.Join(root, f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"srv/app", "opt/tools", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// For the volume tests: a link whose target climbs above the root, and a regular file.
	writeFile(t, filepath.Join(root, "etc/regular"), []byte("not a directory\n"))
	links := map[string]string{"opt/tools/show": "/usr/local/bin/show", "app": "/srv/app", "srv/up": "../../../../mnt/escape"}
	for _, applet := range []string{"sh", "cat", "od", "tr", "printf", "pwd", "hostname", "sleep", "echo", "ls"} {
		links["bin/"+applet] = "busybox"
	}
	for link, target := range links {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	return mkfsErofs(t, root, filepath.Join(dir, "rootfs.erofs"))
}

func mkfsErofs(t *testing.T, src, image string) string {
	t.Helper()
	if out, err := exec.Command("mkfs.erofs", "--quiet", image, src).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.erofs %s: %v\n%s", src, err, out)
	}
	return image
}

// guestConfig is what the manager writes to the config disk.
type guestConfig struct {
	argv     []string
	env      []string
	workdir  string
	hostname string
	volumes  []guestVolume
}

// guestVolume is one volume entry of the config disk.
type guestVolume struct {
	serial, path string
	readonly     bool
}

// buildConfigDisk lays cfg out as the contract says and makes an erofs image of it.
func buildConfigDisk(t *testing.T, dir string, cfg guestConfig) string {
	t.Helper()
	src := filepath.Join(dir, "config")
	if err := os.MkdirAll(filepath.Join(src, ConfigArgvDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(src, ConfigEnvDir), 0o755); err != nil {
		t.Fatal(err)
	}
	for i, a := range cfg.argv {
		writeFile(t, filepath.Join(src, ConfigArgvDir, fmt.Sprintf("%04d", i)), []byte(a))
	}
	for i, e := range cfg.env {
		writeFile(t, filepath.Join(src, ConfigEnvDir, fmt.Sprintf("%04d", i)), []byte(e))
	}
	if cfg.workdir != "" {
		writeFile(t, filepath.Join(src, ConfigWorkdir), []byte(cfg.workdir))
	}
	if cfg.hostname != "" {
		writeFile(t, filepath.Join(src, ConfigHostname), []byte(cfg.hostname))
	}
	for i, v := range cfg.volumes {
		d := filepath.Join(src, ConfigVolumesDir, fmt.Sprintf("%04d", i))
		writeFile(t, filepath.Join(d, ConfigVolumeSerial), []byte(v.serial))
		writeFile(t, filepath.Join(d, ConfigVolumePath), []byte(v.path))
		if v.readonly {
			writeFile(t, filepath.Join(d, ConfigVolumeReadOnly), nil)
		}
	}
	image := mkfsErofs(t, src, filepath.Join(dir, "config.erofs"))
	// A 4 KiB disk makes the kernel's partition scan read past its end and log about it.
	if err := os.Truncate(image, 1<<20); err != nil {
		t.Fatal(err)
	}
	return image
}

// newOverlay makes a sparse ext4 disk as the manager does.
func newOverlay(t *testing.T, dir string) string {
	t.Helper()
	image := filepath.Join(dir, "overlay.raw")
	f, err := os.Create(image)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", image).CombinedOutput()
	if err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	return image
}

// newExt4 makes a sparse ext4 image of size bytes holding seed's files (name → content), as a
// volume's data.raw is made on the host.
func newExt4(t *testing.T, image string, size int64, seed map[string]string) string {
	t.Helper()
	src := image + ".seed"
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range seed {
		writeFile(t, filepath.Join(src, name), []byte(content))
	}
	if err := os.WriteFile(image, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(image, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", src, "-E", "lazy_itable_init=1,lazy_journal_init=1", image).CombinedOutput()
	if err != nil {
		t.Fatalf("mkfs.ext4 -d: %v\n%s", err, out)
	}
	return image
}

// guestDisks are one guest's three disks and any further ones (volumes).
type guestDisks struct {
	rootfs, overlay, config string
	extra                   []extraDisk
}

// extraDisk is a disk attached after the three of the boot contract.
type extraDisk struct {
	path, serial string
	readonly     bool
}

// bootGuest boots the disks under QEMU TCG and returns the console once the guest has powered
// off by itself. whileRunning, if set, is called with a QMP connection once the program has
// started.
func bootGuest(t *testing.T, a *Artifacts, disks guestDisks, whileRunning func(qmpSocket string) error) string {
	t.Helper()
	dir := t.TempDir()
	consoleLog := filepath.Join(dir, "console.log")
	qmpSock := filepath.Join(testutil.ShortTempDir(t), "qmp.sock")

	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	args := []string{
		"-accel", "tcg", "-M", "q35", "-cpu", "max", "-m", "256", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", a.Kernel, "-initrd", a.Initrd, "-append", BaseCmdline,
		"-serial", "file:" + consoleLog,
		"-qmp", "unix:" + qmpSock + ",server=on,wait=off",
	}
	all := append([]extraDisk{{disks.rootfs, SerialRootfs, true}, {disks.overlay, SerialOverlay, false}, {disks.config, SerialConfig, true}}, disks.extra...)
	for i, d := range all {
		// A comma in a QEMU option value is written twice.
		drive := fmt.Sprintf("file=%s,if=none,id=d%d,format=raw", strings.ReplaceAll(d.path, ",", ",,"), i)
		if d.readonly {
			drive += ",readonly=on"
		}
		args = append(args, "-drive", drive, "-device", fmt.Sprintf("virtio-blk-pci,drive=d%d,serial=%s", i, d.serial))
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start QEMU: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	console := func() string {
		data, _ := os.ReadFile(consoleLog)
		return strings.ReplaceAll(string(data), "\r\n", "\n") // the tty turns \n into \r\n
	}

	if whileRunning != nil {
		if err := waitForConsole(ctx, console, MarkerStarted, exited); err != nil {
			t.Fatalf("%v\nconsole:\n%s\nQEMU: %s", err, console(), stderr.String())
		}
		// Repeated every 2 s until QEMU exits, as the manager presses the power button: a press
		// that lands before the guest's acpid listens is lost.
		for done := false; !done; {
			if err := whileRunning(qmpSock); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				exited <- err
				done = true
			case <-time.After(2 * time.Second):
			}
		}
	}
	if err := <-exited; err != nil {
		t.Fatalf("QEMU failed, or did not exit by itself within %v as it does when the guest powers off: %v\nconsole:\n%s\nQEMU: %s",
			bootTimeout, err, console(), stderr.String())
	}
	return console()
}

// waitForConsole polls the console until it holds want.
func waitForConsole(ctx context.Context, console func() string, want string, exited <-chan error) error {
	for !strings.Contains(console(), want) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no %q on the console within %v", want, bootTimeout)
		case err := <-exited:
			return fmt.Errorf("QEMU exited (%v) before %q appeared on the console", err, want)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// shown is what showScript printed.
type shown struct {
	argv0    string
	args     []string
	env      []string
	cwd      string
	hostname string
}

func parseShown(t *testing.T, console string) shown {
	t.Helper()
	start := strings.Index(console, MarkerStarted+"\n")
	if start < 0 {
		t.Fatalf("no %q line on the console:\n%s", MarkerStarted, console)
	}
	var s shown
	decode := func(h string) string {
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatalf("bad hex %q on the console: %v", h, err)
		}
		return string(b)
	}
	for _, line := range strings.Split(console[start:], "\n") {
		key, value, _ := strings.Cut(line, "=")
		switch key {
		case "argv0":
			s.argv0 = value
		case "arg":
			s.args = append(s.args, decode(value))
		case "env":
			if env := decode(value); env != "" {
				s.env = strings.Split(strings.TrimSuffix(env, "\x00"), "\x00")
			}
		case "cwd":
			s.cwd = value
		case "hostname":
			s.hostname = value
		}
	}
	return s
}

var exitedLine = regexp.MustCompile(regexp.QuoteMeta(MarkerExited) + `(\d+)\n`)

// exitCode is the code on the init's exit marker line; it fails the test when there is none.
func exitCode(t *testing.T, console string) int {
	t.Helper()
	m := exitedLine.FindStringSubmatch(console)
	if m == nil {
		t.Fatalf("no %q line on the console:\n%s", MarkerExited, console)
	}
	code, err := strconv.Atoi(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// pressPowerButton asks the guest to power off through ACPI, as the VMM drivers do. QMP is
// line-delimited JSON: a greeting, then one reply per command with events in between.
func pressPowerButton(qmpSocket string) error {
	conn, err := net.DialTimeout("unix", qmpSocket, 5*time.Second)
	if err != nil {
		return fmt.Errorf("QMP: %w", err)
	}
	defer func() { _ = conn.Close() }()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	if _, err := r.ReadBytes('\n'); err != nil {
		return fmt.Errorf("QMP greeting: %w", err)
	}
	for _, command := range []string{"qmp_capabilities", "system_powerdown"} {
		if _, err := fmt.Fprintf(conn, `{"execute":%q}`+"\n", command); err != nil {
			return fmt.Errorf("QMP %s: %w", command, err)
		}
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return fmt.Errorf("QMP %s: %w", command, err)
			}
			var reply struct {
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Desc string `json:"desc"`
				} `json:"error"`
			}
			if err := json.Unmarshal(line, &reply); err != nil {
				return fmt.Errorf("QMP %s: %w", command, err)
			}
			if reply.Error != nil {
				return fmt.Errorf("QMP %s: %s", command, reply.Error.Desc)
			}
			if reply.Return != nil {
				break
			}
		}
	}
	return nil
}
