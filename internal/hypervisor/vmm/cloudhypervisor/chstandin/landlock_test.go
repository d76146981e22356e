package chstandin

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// landlocked is g's config with Landlock enabled and rules as landlock_rules.
func (g guestFiles) landlocked(t *testing.T, rules ...llRule) string {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal([]byte(g.vmConfig()), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["landlock_enable"] = true
	var list []map[string]string
	for _, r := range rules {
		list = append(list, map[string]string{"path": r.path, "access": r.access})
	}
	if list != nil {
		cfg["landlock_rules"] = list
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func mkdir(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

func snapshotBody(dir string) string { return fmt.Sprintf(`{"destination_url":"file://%s"}`, dir) }

// wantDenied checks that r is CH's answer to a snapshot file Landlock refuses to create.
func wantDenied(t *testing.T, r reply, what string) {
	t.Helper()
	chain := r.chain()
	if r.status != 500 || !slices.Contains(chain, "Error creating VM config snapshot file") || chain[len(chain)-1] != "Permission denied (os error 13)" {
		t.Errorf("%s: %d %s, want 500 ending in Permission denied", what, r.status, r.body)
	}
}

// A snapshot goes where a rule reaches, and nowhere else; a rule binds to the directory that was
// there at vm.create, so one removed and made again at the same path is outside it.
func TestLandlockConfinesSnapshotsToTheRules(t *testing.T) {
	ts := startServer(t, Options{})
	g := makeGuestFiles(t, ts.dir)
	snaps := mkdir(t, filepath.Join(ts.dir, "snapshots"))
	ts.mustPut("vm.create", g.landlocked(t, llRule{snaps, "rw"}))
	ts.mustPut("vm.boot", "")
	ts.mustPut("vm.pause", "")

	ts.mustPut("vm.snapshot", snapshotBody(mkdir(t, filepath.Join(snaps, "made-after-create"))))
	wantDenied(t, ts.put("vm.snapshot", snapshotBody(mkdir(t, filepath.Join(ts.dir, "elsewhere")))), "a directory outside the rules")
	if err := os.RemoveAll(snaps); err != nil {
		t.Fatal(err)
	}
	wantDenied(t, ts.put("vm.snapshot", snapshotBody(mkdir(t, filepath.Join(snaps, "again")))), "a directory made again where the rule's was")
	if st := ts.observed(); st != "PAUSED" {
		t.Errorf("state %s after the refused snapshots, want PAUSED", st)
	}
}

// Without landlock_enable the rules are not applied at all (and the existing tests snapshot
// anywhere); with it, the config's own files are in the ruleset without any rule.
func TestLandlockRulesOnlyApplyWhenEnabled(t *testing.T) {
	ts := startServer(t, Options{})
	g := makeGuestFiles(t, ts.dir)
	ts.mustPut("vm.create", g.vmConfig())
	ts.mustPut("vm.boot", "")
	ts.mustPut("vm.pause", "")
	ts.mustPut("vm.snapshot", snapshotBody(mkdir(t, filepath.Join(ts.dir, "anywhere"))))

	locked := startServer(t, Options{})
	g = makeGuestFiles(t, locked.dir)
	locked.mustPut("vm.create", g.landlocked(t))
	locked.mustPut("vm.boot", "") // kernel, initramfs, disk and serial file come from the config
	locked.mustPut("vm.pause", "")
	wantDenied(t, locked.put("vm.snapshot", snapshotBody(mkdir(t, filepath.Join(locked.dir, "anywhere")))), "no rule at all")
}

// A rule whose path is missing at vm.create is dropped silently (path_beneath_rules), and vm.boot
// refuses a rule whose path is missing then.
func TestLandlockRulePathsAreResolvedAtCreateAndCheckedAtBoot(t *testing.T) {
	ts := startServer(t, Options{})
	g := makeGuestFiles(t, ts.dir)
	later := filepath.Join(ts.dir, "later")
	ts.mustPut("vm.create", g.landlocked(t, llRule{later, "rw"}))
	r := ts.put("vm.boot", "")
	want := fmt.Sprintf("Path %q provided in landlock-rules does not exist", later)
	if chain := r.chain(); r.status/100 != 4 && r.status != 500 || chain[len(chain)-1] != want {
		t.Errorf("boot with a missing rule path: %d %s, want %q", r.status, r.body, want)
	}
	mkdir(t, later)
	ts.mustPut("vm.boot", "")
	ts.mustPut("vm.pause", "")
	wantDenied(t, ts.put("vm.snapshot", snapshotBody(mkdir(t, filepath.Join(later, "s")))), "a rule whose path appeared after vm.create")
}

func TestLandlockRefusesAnInvalidAccessAtCreate(t *testing.T) {
	ts := startServer(t, Options{})
	g := makeGuestFiles(t, ts.dir)
	r := ts.put("vm.create", g.landlocked(t, llRule{ts.dir, "rx"}))
	want := []string{"Error from API", actCreate, "Failed to apply landlock config during vm_create", "Invalid Landlock access: Invalid access: x"}
	if r.status != 500 || !slices.Equal(r.chain(), want) {
		t.Errorf("%d %s, want 500 %q", r.status, r.body, want)
	}
	for _, bad := range []string{`[{"path":"/d"}]`, `[{"access":"rw"}]`} {
		body := fmt.Sprintf(`{"payload":{"kernel":"/k"},"landlock_enable":true,"landlock_rules":%s}`, bad)
		if r := ts.put("vm.create", body); r.status != 400 {
			t.Errorf("rules %s: %d %s, want 400 (serde: missing field)", bad, r.status, r.body)
		}
	}
}

// vm.restore applies the rules of the snapshot's config.json, bound to what their paths name at
// the restore: the restored VMM snapshots again beneath them, and only there.
func TestLandlockRestoreAppliesTheSnapshotsRules(t *testing.T) {
	ts := startServer(t, Options{})
	g := makeGuestFiles(t, ts.dir)
	snaps := mkdir(t, filepath.Join(ts.dir, "snapshots"))
	ts.mustPut("vm.create", g.landlocked(t, llRule{snaps, "rw"}))
	ts.mustPut("vm.boot", "")
	ts.mustPut("vm.pause", "")
	first := mkdir(t, filepath.Join(snaps, "first"))
	ts.mustPut("vm.snapshot", snapshotBody(first))
	ts.mustPut("vmm.shutdown", "")

	// The manager replaces the directory between standbys: the new VMM binds to the new one.
	moved := filepath.Join(ts.dir, "moved")
	if err := os.Rename(snaps, moved); err != nil {
		t.Fatal(err)
	}
	mkdir(t, snaps)
	restored := startServer(t, Options{})
	restored.mustPut("vm.restore", fmt.Sprintf(`{"source_url":"file://%s","prefault":false}`, filepath.Join(moved, "first")))
	if ll, _ := restored.info().Config["landlock_enable"].(bool); !ll {
		t.Errorf("restored config has landlock_enable %v", restored.info().Config["landlock_enable"])
	}
	restored.mustPut("vm.snapshot", snapshotBody(mkdir(t, filepath.Join(snaps, "second"))))
	wantDenied(t, restored.put("vm.snapshot", snapshotBody(mkdir(t, filepath.Join(moved, "third")))), "the old directory, moved away")
}
