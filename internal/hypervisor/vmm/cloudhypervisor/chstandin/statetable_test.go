package chstandin

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

var stateNames = map[state]string{stateNone: "NONE", stateCreated: "CREATED", stateRunning: "RUNNING", statePaused: "PAUSED"}

// enter brings a fresh server to st the way a client would.
func (ts *testServer) enter(st state, g guestFiles) {
	ts.t.Helper()
	if st == stateNone {
		return
	}
	ts.mustPut("vm.create", g.vmConfig())
	if st == stateCreated {
		return
	}
	ts.mustPut("vm.boot", "")
	if st == statePaused {
		ts.mustPut("vm.pause", "")
	}
}

// observed is the state as a client sees it: vm.info's state, or NONE when there is no VM.
func (ts *testServer) observed() string {
	ts.t.Helper()
	switch s := ts.info().State; s {
	case "":
		return "NONE"
	case "Created":
		return "CREATED"
	case "Running":
		return "RUNNING"
	case "Paused":
		return "PAUSED"
	default:
		return s
	}
}

// Expected statuses, written from CH's documented behaviour rather than from the implementation.
func status(code int) func(Mode) int { return func(Mode) int { return code } }

// notCreated: VmNotCreated / VmMissingConfig are 500 up to v52 and 404 from v53 on.
func notCreated(m Mode) int {
	if m == V52 {
		return http.StatusInternalServerError
	}
	return http.StatusNotFound
}

const efa = "Error from API"

// makeSnapshot leaves a snapshot of a paused VM in a directory and returns it.
func makeSnapshot(t *testing.T) string {
	t.Helper()
	ts := startServer(t, Options{})
	g := makeGuestFiles(t, ts.dir)
	ts.enter(statePaused, g)
	dir := filepath.Join(ts.dir, "snap")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ts.mustPut("vm.snapshot", fmt.Sprintf(`{"destination_url":"file://%s"}`, dir))
	// The disk locks go with the VMM.
	ts.mustPut("vm.delete", "")
	return dir
}

func TestActionsFollowTheStateTable(t *testing.T) {
	snapshot := makeSnapshot(t)
	all := []state{stateNone, stateCreated, stateRunning, statePaused}
	booted := []state{stateRunning, statePaused}
	unbooted := []state{stateNone, stateCreated}
	withVM := []state{stateCreated, stateRunning, statePaused}
	type row struct {
		method, action string
		// body makes the request body from the test's guest files and scratch directory.
		body   func(g guestFiles, dir string) string
		from   []state
		status func(Mode) int
		// chain is the expected error chain; nil for a success.
		chain []string
		// to is the state afterwards; "" means unchanged.
		to string
	}
	cfg := func(g guestFiles, _ string) string { return g.vmConfig() }
	snapshotTo := func(_ guestFiles, dir string) string {
		return fmt.Sprintf(`{"destination_url":"file://%s"}`, dir)
	}
	restoreFrom := func(guestFiles, string) string {
		return fmt.Sprintf(`{"source_url":"file://%s","prefault":false}`, snapshot)
	}
	growRAM := func(guestFiles, string) string { return fmt.Sprintf(`{"desired_ram":%d}`, 384*mib) }
	addDisk := func(_ guestFiles, dir string) string {
		p := filepath.Join(dir, "extra.raw")
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf(`{"path":%q,"image_type":"Raw"}`, p)
	}
	removeRootfs := func(guestFiles, string) string { return `{"id":"rootfs"}` }
	growDisk := func(guestFiles, string) string { return fmt.Sprintf(`{"id":"rootfs","desired_size":%d}`, 2*mib) }
	resizeZone := func(guestFiles, string) string { return fmt.Sprintf(`{"id":"zone0","desired_ram":%d}`, 128*mib) }
	put, get := http.MethodPut, http.MethodGet
	rows := []row{
		{get, "vmm.ping", nil, all, status(200), nil, ""},

		{put, "vm.create", cfg, []state{stateNone}, status(204), nil, "CREATED"},
		{put, "vm.create", cfg, withVM, status(500), []string{efa, "The VM could not be created", "VM is already created"}, ""},

		{put, "vm.boot", nil, []state{stateNone}, notCreated, []string{efa, "The VM could not boot", "VM config is missing"}, ""},
		{put, "vm.boot", nil, []state{stateCreated}, status(204), nil, "RUNNING"},
		{put, "vm.boot", nil, booted, status(500), []string{efa, "The VM could not boot", "VM is already created"}, ""},

		{put, "vm.pause", nil, unbooted, status(500), []string{efa, "The VM could not be paused", "VM is not running"}, ""},
		{put, "vm.pause", nil, []state{stateRunning}, status(204), nil, "PAUSED"},
		{put, "vm.pause", nil, []state{statePaused}, status(500), []string{efa, "The VM could not be paused", "Cannot pause VM", "Failed to pause migratable component", "Invalid transition: InvalidStateTransition(Paused, Paused)"}, ""},

		{put, "vm.resume", nil, unbooted, status(500), []string{efa, "The VM could not resume", "VM is not running"}, ""},
		{put, "vm.resume", nil, []state{stateRunning}, status(500), []string{efa, "The VM could not resume", "Cannot resume VM", "Failed to resume migratable component", "Invalid transition: InvalidStateTransition(Running, Running)"}, ""},
		{put, "vm.resume", nil, []state{statePaused}, status(204), nil, "RUNNING"},

		{put, "vm.shutdown", nil, unbooted, status(500), []string{efa, "The VM could not shutdown", "VM is not running"}, ""},
		// Shutdown drops the Vm and keeps the config: "Created", never "Shutdown".
		{put, "vm.shutdown", nil, booted, status(204), nil, "CREATED"},

		{put, "vm.reboot", nil, unbooted, notCreated, []string{efa, "The VM could not reboot", "VM is not created"}, ""},
		{put, "vm.reboot", nil, booted, status(204), nil, "RUNNING"},

		{put, "vm.power-button", nil, unbooted, status(500), []string{efa, "Error triggering power button", "VM is not running"}, ""},
		{put, "vm.power-button", nil, booted, status(204), nil, ""},
		{put, "vm.nmi", nil, unbooted, status(500), []string{efa, "Error triggering NMI", "VM is not running"}, ""},
		{put, "vm.nmi", nil, booted, status(204), nil, ""},

		// Delete is idempotent.
		{put, "vm.delete", nil, all, status(204), nil, "NONE"},

		{put, "vm.snapshot", snapshotTo, unbooted, status(500), []string{efa, "The VM could not be snapshotted", "VM is not running"}, ""},
		{put, "vm.snapshot", snapshotTo, []state{stateRunning}, status(500), []string{efa, "The VM could not be snapshotted", "Cannot snapshot VM", "Failed to snapshot migratable component", "Trying to snapshot while VM is running"}, ""},
		{put, "vm.snapshot", snapshotTo, []state{statePaused}, status(204), nil, "PAUSED"},

		{put, "vm.restore", restoreFrom, []state{stateNone}, status(204), nil, "PAUSED"},
		{put, "vm.restore", restoreFrom, withVM, status(500), []string{efa, "The VM could not be restored", "VM is already created"}, ""},

		{put, "vm.resize", growRAM, []state{stateNone}, notCreated, []string{efa, "The VM could not be resized", "VM is not created"}, ""},
		{put, "vm.resize", growRAM, withVM, status(204), nil, ""},

		{get, "vm.info", nil, []state{stateNone}, notCreated, []string{efa, "The VM info is not available", "VM is not created"}, ""},
		{get, "vm.info", nil, withVM, status(200), nil, ""},
		{get, "vm.counters", nil, unbooted, status(500), []string{efa, "The VM info is not available", "VM is not running"}, ""},
		{get, "vm.counters", nil, booted, status(200), nil, ""},

		{put, "vm.add-disk", addDisk, []state{stateNone}, notCreated, []string{efa, "The disk could not be added to the VM", "VM is not created"}, ""},
		{put, "vm.add-disk", addDisk, []state{stateCreated}, status(204), nil, ""},
		{put, "vm.add-disk", addDisk, booted, status(200), nil, ""},
		{put, "vm.remove-device", removeRootfs, []state{stateNone}, notCreated, []string{efa, "The device could not be removed from the VM", "VM is not created"}, ""},
		{put, "vm.remove-device", removeRootfs, withVM, status(204), nil, ""},

		{put, "vm.resize-disk", growDisk, []state{stateNone}, notCreated, []string{efa, "The disk could not be resized", "VM is not created"}, ""},
		{put, "vm.resize-disk", growDisk, []state{stateCreated}, status(500), []string{efa, "The disk could not be resized", "Failed resizing a disk image", "VM is not running"}, ""},
		{put, "vm.resize-disk", growDisk, booted, status(204), nil, ""},
		{put, "vm.resize-zone", resizeZone, []state{stateNone}, notCreated, []string{efa, "The memory zone could not be resized", "VM is not created"}, ""},
		{put, "vm.resize-zone", resizeZone, withVM, status(500), []string{efa, "The memory zone could not be resized", "Unknown memory zone: zone0"}, ""},

		// Release builds have no coredump route.
		{put, "vm.coredump", snapshotTo, all, status(404), []string{"Not Found"}, ""},
	}
	for _, mode := range Modes {
		for _, r := range rows {
			for _, from := range r.from {
				name := fmt.Sprintf("%s/%s_in_%s", mode, r.action, stateNames[from])
				t.Run(name, func(t *testing.T) {
					// The simulated guest ignores the power button so that the VMM stays up.
					ts := startServer(t, Options{Mode: mode, Faults: Faults{IgnorePowerButton: true}})
					g := makeGuestFiles(t, ts.dir)
					ts.enter(from, g)
					var body string
					if r.body != nil {
						body = r.body(g, t.TempDir())
					}
					got := ts.do(r.method, r.action, body)
					if want := r.status(mode); got.status != want {
						t.Fatalf("status %d, want %d (body %s)", got.status, want, got.body)
					}
					switch {
					case r.chain != nil && !slices.Equal(got.chain(), r.chain):
						t.Errorf("error chain %q, want %q", got.chain(), r.chain)
					case got.status == http.StatusNoContent && len(got.body) > 0:
						t.Errorf("204 with a body: %s", got.body)
					}
					want := r.to
					if want == "" {
						want = stateNames[from]
					}
					if st := ts.observed(); st != want {
						t.Errorf("state afterwards %s, want %s", st, want)
					}
					if v := ts.srv.Violations(); len(v) > 0 {
						t.Errorf("conforming requests reported as spec violations: %q", v)
					}
				})
			}
		}
	}
}
