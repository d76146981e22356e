package chstandin

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

func TestBootValidatesTheConfig(t *testing.T) {
	// Validation answers 500 up to v53 and 400 (409 for duplicates) at head; the VM stays CREATED.
	tests := []struct {
		name      string
		edit      func(g guestFiles) string
		duplicate bool
	}{
		{"max_vcpus below boot_vcpus", func(g guestFiles) string {
			return strings.Replace(g.vmConfig(), `"max_vcpus":2`, `"max_vcpus":1`, 1)
		}, false},
		{"balloon as large as RAM", func(g guestFiles) string {
			return strings.Replace(g.vmConfig(), `"balloon":{"size":0`, fmt.Sprintf(`"balloon":{"size":%d`, 256*mib), 1)
		}, false},
		{"virtio-mem hotplug not a multiple of 128 MiB", func(g guestFiles) string {
			return strings.Replace(g.vmConfig(), fmt.Sprintf(`"hotplug_size":%d`, 256*mib), fmt.Sprintf(`"hotplug_size":%d`, 100*mib), 1)
		}, false},
		{"disk serial longer than 20 bytes", func(g guestFiles) string {
			return strings.Replace(g.vmConfig(), `"serial":"hypeman-rootfs"`, `"serial":"a-serial-of-21-bytes!"`, 1)
		}, false},
		{"id starting with __", func(g guestFiles) string {
			return strings.Replace(g.vmConfig(), `"id":"rootfs"`, `"id":"__rootfs"`, 1)
		}, false},
		{"duplicate id", func(g guestFiles) string {
			return strings.Replace(g.vmConfig(), `"rng":{"src":"/dev/urandom"}`, `"rng":{"src":"/dev/urandom","id":"rootfs"}`, 1)
		}, true},
		{"no kernel", func(g guestFiles) string {
			return strings.Replace(g.vmConfig(), fmt.Sprintf(`"kernel":%q,`, g.kernel), "", 1)
		}, false},
	}
	for _, tt := range tests {
		for _, mode := range Modes {
			t.Run(mode.String()+"/"+tt.name, func(t *testing.T) {
				ts := startServer(t, Options{Mode: mode})
				g := makeGuestFiles(t, ts.dir)
				ts.mustPut("vm.create", tt.edit(g))
				r := ts.put("vm.boot", "")
				want := http.StatusInternalServerError
				if mode == Head {
					want = http.StatusBadRequest
					if tt.duplicate {
						want = http.StatusConflict
					}
				}
				if r.status != want || !slices.Equal(r.chain()[:3], []string{efa, "The VM could not boot", "Failed to validate config"}) {
					t.Errorf("%d %s, want %d and a validation error", r.status, r.body, want)
				}
				if st := ts.observed(); st != "CREATED" {
					t.Errorf("state %s after a failed boot, want CREATED", st)
				}
			})
		}
	}
}

func TestBootNeedsThePayloadAndDiskFiles(t *testing.T) {
	ts := startServer(t, Options{})
	g := makeGuestFiles(t, ts.dir)
	if err := os.Remove(g.kernel); err != nil {
		t.Fatal(err)
	}
	ts.mustPut("vm.create", g.vmConfig())
	if r := ts.put("vm.boot", ""); r.status != http.StatusInternalServerError {
		t.Errorf("boot without a kernel file: %d %s", r.status, r.body)
	}
}

func TestSecondVMMCannotLockTheSameDisk(t *testing.T) {
	first := startServer(t, Options{})
	g := makeGuestFiles(t, first.dir)
	first.enter(stateRunning, g)
	second := startServer(t, Options{})
	second.mustPut("vm.create", g.vmConfig())
	r := second.put("vm.boot", "")
	if r.status != http.StatusInternalServerError || !strings.Contains(string(r.body), "Another instance likely holds a lock") {
		t.Errorf("%d %s, want a disk lock error", r.status, r.body)
	}
}

func TestInfoEchoesTheConfigWithDefaultsAndIDs(t *testing.T) {
	ts := startServer(t, Options{})
	g := makeGuestFiles(t, ts.dir)
	ts.mustPut("vm.create", strings.Replace(g.vmConfig(), `,"id":"rootfs"`, "", 1))
	before := ts.info()
	disk := before.Config["disks"].([]any)[0].(map[string]any)
	if disk["num_queues"] != float64(1) || disk["sparse"] != true || disk["image_type"] != "Raw" {
		t.Errorf("disk defaults: %v", disk)
	}
	if _, ok := disk["id"]; ok || before.DeviceTree != nil {
		t.Errorf("ids or a device tree before boot: %v %v", disk, before.DeviceTree)
	}
	ts.mustPut("vm.boot", "")
	after := ts.info()
	disk = after.Config["disks"].([]any)[0].(map[string]any)
	if disk["id"] != "_disk0" || after.DeviceTree["_disk0"] == nil {
		t.Errorf("after boot: disk %v, device tree %v", disk, after.DeviceTree)
	}
	if after.MemoryActualSize != 256*mib {
		t.Errorf("memory_actual_size %d, want %d", after.MemoryActualSize, 256*mib)
	}
}

func TestSerialFileIsTruncatedAtEachBootAndRestore(t *testing.T) {
	ts := startServer(t, Options{})
	g := makeGuestFiles(t, ts.dir)
	if err := os.WriteFile(g.serial, []byte("history\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts.mustPut("vm.create", g.vmConfig())
	if got := readFile(t, g.serial); got != "" {
		t.Errorf("after create the serial file holds %q: CH truncates it", got)
	}
	ts.mustPut("vm.boot", "")
	marker := system.MarkerStarted + "\n"
	if got := readFile(t, g.serial); got != marker {
		t.Errorf("after boot %q, want the started marker", got)
	}
	ts.mustPut("vm.shutdown", "")
	ts.mustPut("vm.boot", "")
	if got := readFile(t, g.serial); got != marker {
		t.Errorf("after a second boot %q, want one fresh marker", got)
	}
	ts.mustPut("vm.pause", "")
	snap := filepath.Join(ts.dir, "snap")
	if err := os.Mkdir(snap, 0o700); err != nil {
		t.Fatal(err)
	}
	ts.mustPut("vm.snapshot", fmt.Sprintf(`{"destination_url":"file://%s"}`, snap))
	ts.mustPut("vm.delete", "")
	ts.mustPut("vm.restore", fmt.Sprintf(`{"source_url":"file://%s","prefault":false}`, snap))
	ts.mustPut("vm.resume", "")
	if got := readFile(t, g.serial); got != "" {
		t.Errorf("after restore and resume %q: the file is re-created and the guest prints nothing new", got)
	}
}

func snapshotDir(t *testing.T, ts *testServer) string {
	t.Helper()
	dir := filepath.Join(ts.dir, fmt.Sprintf("snap%d", time.Now().UnixNano()))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSnapshotWritesTheThreeFilesExclusively(t *testing.T) {
	ts := startServer(t, Options{})
	g := makeGuestFiles(t, ts.dir)
	ts.enter(statePaused, g)
	dir := snapshotDir(t, ts)
	body := fmt.Sprintf(`{"destination_url":"file://%s"}`, dir)
	ts.mustPut("vm.snapshot", body)
	for _, name := range []string{ConfigFile, StateFile, MemoryFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
		if name == MemoryFile && fi.Size() != 256*mib {
			t.Errorf("%s is %d bytes, want the RAM size %d", name, fi.Size(), 256*mib)
		}
	}
	if st := ts.observed(); st != "PAUSED" {
		t.Errorf("state %s after snapshot, want PAUSED", st)
	}
	again := ts.put("vm.snapshot", body)
	if again.status != 500 || !slices.Contains(again.chain(), "File exists (os error 17)") {
		t.Errorf("second snapshot into the same directory: %d %s", again.status, again.body)
	}
}

func TestSnapshotDestinationErrors(t *testing.T) {
	tests := map[string]string{
		"missing directory": "file:///nonexistent/snapshot",
		"not a file URL":    "tcp://127.0.0.1:1",
	}
	for name, url := range tests {
		t.Run(name, func(t *testing.T) {
			ts := startServer(t, Options{})
			ts.enter(statePaused, makeGuestFiles(t, ts.dir))
			r := ts.put("vm.snapshot", fmt.Sprintf(`{"destination_url":%q}`, url))
			if r.status != 500 || r.chain()[2] != "Cannot send VM snapshot" {
				t.Errorf("%d %s", r.status, r.body)
			}
		})
	}
}

func TestRestoreRebuildsThePausedVM(t *testing.T) {
	ts := startServer(t, Options{})
	g := makeGuestFiles(t, ts.dir)
	ts.enter(stateRunning, g)
	ts.mustPut("vm.resize", fmt.Sprintf(`{"desired_ram":%d}`, 384*mib))
	ts.mustPut("vm.pause", "")
	want := ts.info()
	dir := snapshotDir(t, ts)
	ts.mustPut("vm.snapshot", fmt.Sprintf(`{"destination_url":"file://%s"}`, dir))
	ts.mustPut("vm.delete", "")

	ts.mustPut("vm.restore", fmt.Sprintf(`{"source_url":"file://%s","prefault":false}`, dir))
	got := ts.info()
	if got.State != "Paused" || got.MemoryActualSize != want.MemoryActualSize || fmt.Sprint(got.Config) != fmt.Sprint(want.Config) {
		t.Errorf("restored %+v\nwant %+v", got, want)
	}
	ts.mustPut("vm.resume", "")
	if st := ts.observed(); st != "RUNNING" {
		t.Errorf("state %s after resume", st)
	}
}

func TestRestoreWithResumeRuns(t *testing.T) {
	ts := startServer(t, Options{})
	dir := makeSnapshot(t)
	ts.mustPut("vm.restore", fmt.Sprintf(`{"source_url":"file://%s","resume":true}`, dir))
	if st := ts.observed(); st != "RUNNING" {
		t.Errorf("state %s, want RUNNING", st)
	}
}

func TestRestoreFailuresResetTheVMM(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(dir string) error
	}{
		{"missing config.json", func(dir string) error { return os.Remove(filepath.Join(dir, ConfigFile)) }},
		{"missing memory-ranges", func(dir string) error { return os.Remove(filepath.Join(dir, MemoryFile)) }},
		{"corrupt state.json", func(dir string) error { return os.WriteFile(filepath.Join(dir, StateFile), []byte("{"), 0o600) }},
		{"memory of another size", func(dir string) error { return os.Truncate(filepath.Join(dir, MemoryFile), 4096) }},
		{"memory of another snapshot", func(dir string) error {
			f, err := os.OpenFile(filepath.Join(dir, MemoryFile), os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			if _, err := f.WriteAt([]byte("0000"), int64(len(memoryHeader))); err != nil {
				_ = f.Close()
				return err
			}
			return f.Close()
		}},
	}
	for _, tt := range tests {
		for _, mode := range Modes {
			t.Run(mode.String()+"/"+tt.name, func(t *testing.T) {
				dir := makeSnapshot(t)
				if err := tt.spoil(dir); err != nil {
					t.Fatal(err)
				}
				ts := startServer(t, Options{Mode: mode})
				r := ts.put("vm.restore", fmt.Sprintf(`{"source_url":"file://%s"}`, dir))
				if r.status != 500 || r.chain()[1] != "The VM could not be restored" {
					t.Errorf("%d %s", r.status, r.body)
				}
				if st := ts.observed(); st != "NONE" {
					t.Errorf("state %s after a failed restore, want NONE", st)
				}
			})
		}
	}
}

func TestRestorePrefaultWithOnDemand(t *testing.T) {
	for _, mode := range Modes {
		t.Run(mode.String(), func(t *testing.T) {
			ts := startServer(t, Options{Mode: mode})
			r := ts.put("vm.restore", `{"source_url":"file:///x","prefault":true,"memory_restore_mode":"OnDemand"}`)
			want := 500
			if mode == Head {
				want = 400
			}
			if r.status != want {
				t.Errorf("%d %s, want %d", r.status, r.body, want)
			}
		})
	}
}

func TestResizeRules(t *testing.T) {
	ram := func(n int) string { return fmt.Sprintf(`{"desired_ram":%d}`, n*mib) }
	tests := []struct {
		name   string
		steps  []string
		status int
		// hotplugged is the config's hotplugged_size afterwards, in MiB.
		hotplugged int
	}{
		{"grow within hotplug", []string{ram(384)}, 204, 128},
		{"grow by 2 MiB blocks", []string{ram(258)}, 204, 2},
		{"same size again", []string{ram(384), ram(384)}, 500, 128},
		{"below the boot size", []string{ram(128)}, 500, 0},
		{"not a 2 MiB multiple", []string{ram(257)}, 500, 0},
		{"past the hotplug size", []string{ram(640)}, 500, 0},
		{"back to the boot size", []string{ram(384), ram(256)}, 204, 0},
		{"vCPUs above max", []string{`{"desired_vcpus":3}`}, 500, 0},
		{"vCPU removal pending", []string{`{"desired_vcpus":1}`, ram(384)}, 429, 0},
		{"balloon", []string{fmt.Sprintf(`{"desired_balloon":%d}`, 64*mib)}, 204, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, Options{})
			ts.enter(stateRunning, makeGuestFiles(t, ts.dir))
			var last reply
			for _, step := range tt.steps {
				last = ts.put("vm.resize", step)
			}
			if last.status != tt.status {
				t.Fatalf("last resize: %d %s, want %d", last.status, last.body, tt.status)
			}
			mem := ts.info().Config["memory"].(map[string]any)
			plugged, _ := mem["hotplugged_size"].(float64)
			if int(plugged) != tt.hotplugged*mib {
				t.Errorf("hotplugged_size %v, want %d MiB", mem["hotplugged_size"], tt.hotplugged)
			}
		})
	}
}

func TestGuestPlugsVirtioMemAfterADelay(t *testing.T) {
	const delay = 200 * time.Millisecond
	ts := startServer(t, Options{Faults: Faults{PlugDelay: delay}})
	ts.enter(stateRunning, makeGuestFiles(t, ts.dir))
	ts.mustPut("vm.resize", fmt.Sprintf(`{"desired_ram":%d}`, 384*mib))
	if got := ts.info().MemoryActualSize; got != 256*mib {
		t.Errorf("right after the resize the guest has %d MiB, want the 256 it had", got/mib)
	}
	ts.mustPut("vm.pause", "")
	time.Sleep(2 * delay)
	if got := ts.info().MemoryActualSize; got != 256*mib {
		t.Errorf("a paused guest plugged memory: %d MiB", got/mib)
	}
	ts.mustPut("vm.resume", "")
	if got := ts.info().MemoryActualSize; got != 384*mib {
		t.Errorf("after the delay the guest has %d MiB, want 384", got/mib)
	}
}

func TestFaultStuckPlugNeverReachesTheSize(t *testing.T) {
	ts := startServer(t, Options{Faults: Faults{StuckPlug: true, PlugDelay: time.Millisecond}})
	ts.enter(stateRunning, makeGuestFiles(t, ts.dir))
	ts.mustPut("vm.resize", fmt.Sprintf(`{"desired_ram":%d}`, 384*mib))
	time.Sleep(20 * time.Millisecond)
	info := ts.info()
	if info.MemoryActualSize != 256*mib || info.Config["memory"].(map[string]any)["hotplugged_size"] != float64(128*mib) {
		t.Errorf("actual %d MiB, config %v: want the request recorded and nothing plugged", info.MemoryActualSize/mib, info.Config["memory"])
	}
}

func TestResizeACPIHotAddsIn128MiBSteps(t *testing.T) {
	ts := startServer(t, Options{})
	g := makeGuestFiles(t, ts.dir)
	ts.mustPut("vm.create", strings.Replace(g.vmConfig(), `"hotplug_method":"VirtioMem"`, `"hotplug_method":"Acpi"`, 1))
	ts.mustPut("vm.boot", "")
	if r := ts.put("vm.resize", fmt.Sprintf(`{"desired_ram":%d}`, 300*mib)); r.status != 500 {
		t.Errorf("a 44 MiB hot-add: %d %s", r.status, r.body)
	}
	ts.mustPut("vm.resize", fmt.Sprintf(`{"desired_ram":%d}`, 384*mib))
	info := ts.info()
	if size := info.Config["memory"].(map[string]any)["size"]; size != float64(384*mib) || info.MemoryActualSize != 384*mib {
		t.Errorf("memory.size %v, actual %d; want both %d", size, info.MemoryActualSize, 384*mib)
	}
}

func TestResizeBeforeBootRewritesTheConfig(t *testing.T) {
	ts := startServer(t, Options{})
	ts.enter(stateCreated, makeGuestFiles(t, ts.dir))
	ts.mustPut("vm.resize", fmt.Sprintf(`{"desired_vcpus":1,"desired_ram":%d}`, 128*mib))
	cfg := ts.info().Config
	if cfg["cpus"].(map[string]any)["boot_vcpus"] != float64(1) || cfg["memory"].(map[string]any)["size"] != float64(128*mib) {
		t.Errorf("config after resize: %v %v", cfg["cpus"], cfg["memory"])
	}
}

func TestDevicesAddAndRemove(t *testing.T) {
	for _, mode := range Modes {
		t.Run(mode.String(), func(t *testing.T) {
			ts := startServer(t, Options{Mode: mode})
			g := makeGuestFiles(t, ts.dir)
			ts.enter(stateRunning, g)
			var bdfs []string
			for i := range 2 {
				p := filepath.Join(ts.dir, fmt.Sprintf("hot%d.raw", i))
				if err := os.WriteFile(p, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				r := ts.put("vm.add-disk", fmt.Sprintf(`{"path":%q,"image_type":"Raw"}`, p))
				if r.status != 200 || !strings.Contains(string(r.body), `"id":"_disk`) {
					t.Fatalf("hotplug: %d %s", r.status, r.body)
				}
				bdfs = append(bdfs, string(r.body))
			}
			if bdfs[0] == bdfs[1] {
				t.Errorf("two hotplugs got the same answer %s", bdfs[0])
			}
			dup := ts.put("vm.add-net", `{"id":"rootfs"}`)
			wantDup := map[Mode]int{V52: 500, V53: 500, Head: 409}[mode]
			if dup.status != wantDup {
				t.Errorf("duplicate id: %d %s, want %d", dup.status, dup.body, wantDup)
			}
			unknown := ts.put("vm.remove-device", `{"id":"nope"}`)
			wantUnknown := map[Mode]int{V52: 500, V53: 500, Head: 404}[mode]
			if unknown.status != wantUnknown {
				t.Errorf("unknown id: %d %s, want %d", unknown.status, unknown.body, wantUnknown)
			}
		})
	}
}

func TestVMMShutdownAnswers200AndExits(t *testing.T) {
	ts := startServer(t, Options{})
	ts.enter(stateRunning, makeGuestFiles(t, ts.dir))
	r := ts.put("vmm.shutdown", "")
	if r.status != http.StatusOK || len(r.body) != 0 || r.header.Get("Content-Length") != "0" {
		t.Errorf("%d %q %v, want 200 with an empty body", r.status, r.body, r.header)
	}
	select {
	case <-ts.srv.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("the VMM did not exit")
	}
	if _, err := os.Stat(ts.sock); !errors.Is(err, os.ErrNotExist) || ts.srv.ExitCode() != 0 {
		t.Errorf("socket %v, exit code %d; want it removed and 0", err, ts.srv.ExitCode())
	}
}

func TestPowerButtonPowersTheGuestOff(t *testing.T) {
	ts := startServer(t, Options{PowerOffDelay: time.Millisecond})
	ts.enter(statePaused, makeGuestFiles(t, ts.dir))
	ts.mustPut("vm.power-button", "")
	time.Sleep(50 * time.Millisecond)
	if st := ts.observed(); st != "PAUSED" {
		t.Fatalf("a paused guest reacted to the power button: %s", st)
	}
	ts.mustPut("vm.resume", "")
	select {
	case <-ts.srv.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("the VMM did not exit after the guest powered off")
	}
	if _, err := os.Stat(ts.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after a clean exit: %v", err)
	}
}

func TestFaultDieAfterBootLeavesTheSocket(t *testing.T) {
	ts := startServer(t, Options{Faults: Faults{DieAfterBoot: true}})
	ts.enter(stateRunning, makeGuestFiles(t, ts.dir))
	select {
	case <-ts.srv.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("the VMM did not die")
	}
	if _, err := os.Stat(ts.sock); err != nil || !ts.srv.Crashed() {
		t.Errorf("socket %v, crashed %v: a dead VMM leaves its socket", err, ts.srv.Crashed())
	}
}

func TestFaultSnapshot500KeepsTheVMPaused(t *testing.T) {
	ts := startServer(t, Options{Faults: Faults{SnapshotFail: true}})
	ts.enter(statePaused, makeGuestFiles(t, ts.dir))
	dir := snapshotDir(t, ts)
	r := ts.put("vm.snapshot", fmt.Sprintf(`{"destination_url":"file://%s"}`, dir))
	if r.status != 500 || !slices.Contains(r.chain(), "No space left on device (os error 28)") {
		t.Errorf("%d %s", r.status, r.body)
	}
	if st := ts.observed(); st != "PAUSED" {
		t.Errorf("state %s, want PAUSED", st)
	}
}

func TestFaultRestoreFailResetsToNone(t *testing.T) {
	dir := makeSnapshot(t)
	ts := startServer(t, Options{Faults: Faults{RestoreFail: true}})
	if r := ts.put("vm.restore", fmt.Sprintf(`{"source_url":"file://%s"}`, dir)); r.status != 500 {
		t.Errorf("%d %s", r.status, r.body)
	}
	if st := ts.observed(); st != "NONE" {
		t.Errorf("state %s, want NONE", st)
	}
}

func TestKillInterruptsASlowBoot(t *testing.T) {
	ts := startServer(t, Options{Faults: Faults{BootDelay: time.Minute}})
	ts.mustPut("vm.create", makeGuestFiles(t, ts.dir).vmConfig())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequest(http.MethodPut, "http://localhost/api/v1/vm.boot", nil)
		if resp, err := ts.client.Do(req); err == nil {
			_ = resp.Body.Close()
		}
	}()
	time.Sleep(50 * time.Millisecond)
	ts.srv.Kill()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the boot request outlived the VMM")
	}
}

func TestListenHandlesStaleSockets(t *testing.T) {
	for _, mode := range Modes {
		t.Run(mode.String(), func(t *testing.T) {
			sock := filepath.Join(testutil.ShortTempDir(t), "ch.sock")
			if err := os.WriteFile(sock, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			l, err := Listen(sock, mode)
			if mode == V52 {
				if !errors.Is(err, syscall.EADDRINUSE) {
					t.Errorf("v52 over a stale socket: %v, want EADDRINUSE", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("v53+ over a stale socket: %v", err)
			}
			defer func() { _ = l.Close() }()
			if _, err := Listen(sock, mode); !errors.Is(err, ErrSocketInUse) {
				t.Errorf("a second VMM on a live socket: %v, want ErrSocketInUse", err)
			}
			if _, err := os.Stat(sock + ".lock"); err != nil {
				t.Errorf("no lock file: %v", err)
			}
		})
	}
}

func TestParseFaults(t *testing.T) {
	got, err := ParseFaults("snapshot-500, restore-fail,slow-boot=5s,slow-start=1s,die-after-boot=2s,ignore-power-button,text-errors,slow-plug=3s,stuck-plug,fill=50%,slow-prefault=2s,count=300ms")
	want := Faults{SnapshotFail: true, RestoreFail: true, BootDelay: 5 * time.Second, StartDelay: time.Second, DieAfterBoot: true, DieDelay: 2 * time.Second,
		IgnorePowerButton: true, TextErrors: true, PlugDelay: 3 * time.Second, StuckPlug: true, Fill: 50, PrefaultDelay: 2 * time.Second, Count: 300 * time.Millisecond}
	if err != nil || got != want {
		t.Errorf("got %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"snapshot-501", "slow-boot", "slow-boot=soon", "restore-fail=1s", "fill=101", "fill=half"} {
		if _, err := ParseFaults(bad); err == nil {
			t.Errorf("ParseFaults(%q) accepted it", bad)
		}
	}
}

func TestParseCommandLine(t *testing.T) {
	tests := []struct {
		args []string
		want CommandLine
	}{
		{[]string{"--api-socket", "path=/run/ch.sock"}, CommandLine{SocketPath: "/run/ch.sock", SocketFD: -1, Seccomp: "true"}},
		{[]string{"--api-socket=/run/ch.sock", "-vv", "--log-file", "/l"}, CommandLine{SocketPath: "/run/ch.sock", SocketFD: -1, Verbosity: 2, LogFile: "/l", Seccomp: "true"}},
		{[]string{"--api-socket", "fd=3", "--seccomp", "false"}, CommandLine{SocketFD: 3, Seccomp: "false"}},
		{[]string{"--api-socket", "path=/s", "--seccomp", "true"}, CommandLine{SocketPath: "/s", SocketFD: -1, Seccomp: "true"}},
		{[]string{"-V"}, CommandLine{SocketFD: -1, Version: true, Seccomp: "true"}},
		{[]string{"--version"}, CommandLine{SocketFD: -1, Version: true, Seccomp: "true"}},
	}
	for _, tt := range tests {
		got, err := ParseCommandLine(tt.args)
		if err != nil || got != tt.want {
			t.Errorf("%q: got %+v, %v; want %+v", tt.args, got, err, tt.want)
		}
	}
	for _, bad := range [][]string{{"--api-socket-path", "/x"}, {"--api-socket"}, {"--api-socket", "fd=x"}, {"--kernel", "/k"}, {"--seccomp", "maybe"},
		// Without a payload on the command line, clap refuses the vm-config options.
		{"--api-socket", "path=/s", "--landlock"}, {"--api-socket", "path=/s", "--landlock-rules", "path=/d,access=rw", "path=/e,access=r"}} {
		if _, err := ParseCommandLine(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
