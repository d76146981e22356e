package chstandin

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An on-demand restore reads nothing of the memory file up front: a file whose first page is
// not the snapshot's is only found out once the guest runs and touches it (and then the VMM
// dies, as CH would with a guest on garbage). A copying restore reads it all and refuses it.
func TestOnDemandRestoreDoesNotReadTheMemoryFileUpFront(t *testing.T) {
	for _, mode := range Modes {
		t.Run(mode.String(), func(t *testing.T) {
			dir := makeSnapshot(t)
			spoilToken(t, dir)
			ts := startServer(t, Options{Mode: mode})
			r := ts.put("vm.restore", fmt.Sprintf(`{"source_url":"file://%s"}`, dir))
			if r.status != 500 {
				t.Fatalf("copying restore of a foreign memory file: %d %s", r.status, r.body)
			}
			ts.mustPut("vm.restore", fmt.Sprintf(`{"source_url":"file://%s","memory_restore_mode":"OnDemand"}`, dir))
			if st := ts.observed(); st != "PAUSED" {
				t.Fatalf("state %s after an on-demand restore, want PAUSED", st)
			}
			ts.mustPut("vm.resume", "")
			select {
			case <-ts.srv.Exited():
			case <-time.After(10 * time.Second):
				t.Fatal("the guest ran on a foreign memory file and the VMM lived on")
			}
		})
	}
}

func spoilToken(t *testing.T, dir string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, MemoryFile), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if _, err := f.WriteAt([]byte("0000"), int64(len(memoryHeader))); err != nil {
		t.Fatal(err)
	}
}

// From v53, vm.snapshot answers 500 "still in progress" until the background prefault has read
// every page, whatever the VM's state, and then works; v52 has no such check. The memory file is
// held open until then (v53) or until the VM goes (v52).
func TestSnapshotDuringAnOnDemandRestore(t *testing.T) {
	for _, mode := range Modes {
		t.Run(mode.String(), func(t *testing.T) {
			dir := makeSnapshot(t)
			ts := startServer(t, Options{Mode: mode, Faults: Faults{PrefaultDelay: 600 * time.Millisecond}})
			ts.mustPut("vm.restore", fmt.Sprintf(`{"source_url":"file://%s","memory_restore_mode":"OnDemand","resume":true}`, dir))
			if st := ts.observed(); st != "RUNNING" {
				t.Fatalf("state %s, want RUNNING", st)
			}
			lazy := func() *lazyMemory {
				ts.srv.mu.Lock()
				defer ts.srv.mu.Unlock()
				return ts.srv.m.vm.lazy
			}()
			ts.mustPut("vm.pause", "")
			dest := snapshotDir(t, ts)
			body := fmt.Sprintf(`{"destination_url":"file://%s"}`, dest)
			r := ts.put("vm.snapshot", body)
			if !mode.atLeast53() {
				if r.status != 204 {
					t.Fatalf("v52 snapshot during an on-demand restore: %d %s", r.status, r.body)
				}
				if !lazy.open() {
					t.Error("v52 closed the memory file while the VM lives")
				}
				ts.mustPut("vm.delete", "")
				if lazy.open() {
					t.Error("the memory file is still open after vm.delete")
				}
				return
			}
			if c := r.chain(); r.status != 500 || len(c) != 3 || c[2] != msgRestoring {
				t.Fatalf("snapshot during an on-demand restore: %d %s", r.status, r.body)
			}
			if entries, _ := os.ReadDir(dest); len(entries) != 0 {
				t.Errorf("the refused snapshot wrote %d files", len(entries))
			}
			if !lazy.open() {
				t.Error("the memory file was closed while pages were still being read in")
			}
			deadline := time.Now().Add(10 * time.Second)
			for ts.put("vm.snapshot", body).status != 204 {
				if time.Now().After(deadline) {
					t.Fatal("the snapshot was refused for 10s after an on-demand restore")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if lazy.open() {
				t.Error("the memory file is still open after the prefault finished")
			}
		})
	}
}

// A guest with fill=50 writes half its RAM as data, so its snapshot is not all holes.
func TestFillWritesUsedMemory(t *testing.T) {
	ts := startServer(t, Options{Faults: Faults{Fill: 50}})
	g := makeGuestFiles(t, ts.dir)
	ts.enter(statePaused, g)
	dir := snapshotDir(t, ts)
	ts.mustPut("vm.snapshot", fmt.Sprintf(`{"destination_url":"file://%s"}`, dir))
	data, err := os.ReadFile(filepath.Join(dir, MemoryFile))
	if err != nil {
		t.Fatal(err)
	}
	nonZero := 0
	for p := pageSize; p < len(data); p += pageSize {
		if data[p] != 0 || data[p+1] != 0 || data[p+2] != 0 {
			nonZero++
		}
	}
	if pages := len(data) / pageSize; nonZero < pages*45/100 || nonZero > pages*55/100 {
		t.Errorf("%d of %d pages hold data, want about half", nonZero, pages)
	}
}

// The guest's counter lives in its memory: after a restore, copied or on demand, it goes on from
// where the snapshot left it, so an on-demand restore does serve the guest its memory.
func TestCounterContinuesAcrossRestore(t *testing.T) {
	for _, mode := range Modes {
		for _, how := range []string{"Copy", "OnDemand"} {
			t.Run(mode.String()+"/"+how, func(t *testing.T) {
				ts := startServer(t, Options{Mode: mode, Faults: Faults{Count: 20 * time.Millisecond}})
				g := makeGuestFiles(t, ts.dir)
				ts.enter(stateRunning, g)
				counts := func() []int {
					var out []int
					for _, line := range strings.Split(readFile(t, g.serial), "\n") {
						var n int
						if _, err := fmt.Sscanf(line, "count %d", &n); err == nil {
							out = append(out, n)
						}
					}
					return out
				}
				waitCounts := func(n int) []int {
					deadline := time.Now().Add(10 * time.Second)
					for {
						if c := counts(); len(c) >= n {
							return c
						}
						if time.Now().After(deadline) {
							t.Fatalf("the guest printed %v, want %d counts", counts(), n)
						}
						time.Sleep(10 * time.Millisecond)
					}
				}
				waitCounts(3)
				ts.mustPut("vm.pause", "")
				before := counts()
				dir := snapshotDir(t, ts)
				ts.mustPut("vm.snapshot", fmt.Sprintf(`{"destination_url":"file://%s"}`, dir))
				ts.mustPut("vm.delete", "")
				ts.mustPut("vm.restore", fmt.Sprintf(`{"source_url":"file://%s","memory_restore_mode":%q,"resume":true}`, dir, how))
				after := waitCounts(2)
				if last := before[len(before)-1]; after[0] != last+1 || after[1] != last+2 {
					t.Errorf("counted %v before the snapshot and %v after the restore, want it to go on from %d", before, after, last+1)
				}
			})
		}
	}
}

// A VM restored on demand and left paused can be snapshotted once the prefault is done and the
// memory file closed (v53 on), or at once (v52): its memory is all there.
func TestSnapshotOfAPausedOnDemandRestore(t *testing.T) {
	for _, mode := range Modes {
		t.Run(mode.String(), func(t *testing.T) {
			dir := makeSnapshot(t)
			ts := startServer(t, Options{Mode: mode})
			ts.mustPut("vm.restore", fmt.Sprintf(`{"source_url":"file://%s","memory_restore_mode":"OnDemand"}`, dir))
			body := fmt.Sprintf(`{"destination_url":"file://%s"}`, snapshotDir(t, ts))
			deadline := time.Now().Add(10 * time.Second)
			for {
				r := ts.put("vm.snapshot", body)
				if r.status == 204 {
					break
				}
				if c := r.chain(); len(c) != 3 || c[2] != msgRestoring || time.Now().After(deadline) {
					t.Fatalf("snapshot of a paused VM restored on demand: %d %s", r.status, r.body)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
