package chstandin

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Snapshot file names (stable since v22).
const (
	ConfigFile = "config.json"
	StateFile  = "state.json"
	MemoryFile = "memory-ranges"
)

// memoryHeader starts the stand-in's memory-ranges file; the token after it ties the file to its
// state.json, so that restore notices a memory file from another snapshot or a corrupt one. The
// next line holds the guest's counter (Faults.Count): guest memory the restored guest reads back.
const memoryHeader = "CHSTANDIN-MEMORY "

// firstPage is the start of memory-ranges for a snapshot with token whose guest had counted to n.
func firstPage(token string, n uint64) string {
	return fmt.Sprintf("%s%s\ncount=%d\n", memoryHeader, token, n)
}

// parseFirstPage reads the counter out of the first page, which must belong to token.
func parseFirstPage(page []byte, token string) (uint64, error) {
	head := memoryHeader + token + "\ncount="
	var n uint64
	if !bytes.HasPrefix(page, []byte(head)) {
		return 0, fmt.Errorf("%s does not hold the memory of this snapshot", MemoryFile)
	}
	if _, err := fmt.Sscanf(string(page[len(head):]), "%d\n", &n); err != nil {
		return 0, fmt.Errorf("%s has no counter after its header: %v", MemoryFile, err)
	}
	return n, nil
}

type snapshotRequest struct {
	DestinationURL *string `json:"destination_url"`
}

func parseSnapshotConfig(body []byte) (any, error) {
	var r snapshotRequest
	if err := decodeJSON(body, &r); err != nil {
		return nil, err
	}
	var c serdeChecks
	c.required(r.DestinationURL != nil, "destination_url")
	return r, c.err
}

type restoreRequest struct {
	SourceURL         *string `json:"source_url"`
	Prefault          *bool   `json:"prefault"`
	MemoryRestoreMode *string `json:"memory_restore_mode"`
	Resume            *bool   `json:"resume"`
	NetFds            []struct {
		ID     *string `json:"id"`
		NumFds *uint64 `json:"num_fds"`
	} `json:"net_fds"`
}

func parseRestoreConfig(body []byte) (any, error) {
	var r restoreRequest
	if err := decodeJSON(body, &r); err != nil {
		return nil, err
	}
	var c serdeChecks
	c.required(r.SourceURL != nil, "source_url")
	c.variant(r.MemoryRestoreMode, "Copy", "OnDemand")
	for _, n := range r.NetFds {
		c.required(n.ID != nil, "id")
		c.required(n.NumFds != nil, "num_fds")
	}
	return r, c.err
}

// osError is how Rust's io::Error displays: "File exists (os error 17)".
func osError(err error) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err.Error()
	}
	msg := errno.Error()
	return strings.ToUpper(msg[:1]) + msg[1:] + fmt.Sprintf(" (os error %d)", int(errno))
}

// memoryRange is one guest-physical RAM range, as the memory manager's state lists them.
type memoryRange struct {
	GPA    uint64 `json:"gpa"`
	Length uint64 `json:"length"`
}

// memoryState is the stand-in's memory-manager section of state.json.
type memoryState struct {
	Ranges []memoryRange `json:"memory_ranges"`
	// Plugged is the virtio-mem memory the guest had plugged.
	Plugged uint64 `json:"virtio_mem_plugged"`
	Token   string `json:"chstandin_token"`
}

// total is the size of the RAM the ranges cover, which is the size of memory-ranges.
func (m memoryState) total() uint64 {
	var total uint64
	for _, r := range m.Ranges {
		total += r.Length
	}
	return total
}

// guestRanges lays RAM out below the 32-bit hole at 3 GiB and above 4 GiB, as on x86.
func guestRanges(total uint64) []memoryRange {
	const low, high = 3 << 30, 4 << 30
	if total <= low {
		return []memoryRange{{0, total}}
	}
	return []memoryRange{{0, low}, {high, total - low}}
}

type snapshotTree struct {
	Snapshots    map[string]snapshotTree `json:"snapshots"`
	SnapshotData map[string]string       `json:"snapshot_data"`
}

func leaf(state any) snapshotTree {
	data, _ := json.Marshal(state)
	return snapshotTree{Snapshots: map[string]snapshotTree{}, SnapshotData: map[string]string{"state": string(data)}}
}

const actSnapshot = "The VM could not be snapshotted"

// snapshotFileError is CH's message for a snapshot file it cannot create.
var snapshotFileError = map[string]string{
	ConfigFile: "Error creating VM config snapshot file",
	StateFile:  "Error creating VM state snapshot file",
	MemoryFile: "Error creating memory snapshot file",
}

func (s *Server) snapshot(req any) response {
	url := *req.(snapshotRequest).DestinationURL
	switch s.state() {
	case stateNone, stateCreated:
		return s.fromAPI(http.StatusInternalServerError, actSnapshot, msgNotRunning)
	}
	// v53 checks this first, in any state of the Vm; v52 snapshots (and faults every page in).
	if l := s.m.vm.lazy; l != nil && l.restoring.Load() && s.opts.Mode.atLeast53() {
		return s.fromAPI(http.StatusInternalServerError, actSnapshot, msgRestoring)
	}
	if s.state() == stateRunning {
		return s.fromAPI(http.StatusInternalServerError, actSnapshot, "Cannot snapshot VM", "Failed to snapshot migratable component", "Trying to snapshot while VM is running")
	}
	fail := func(causes ...string) response {
		return s.fromAPI(http.StatusInternalServerError, actSnapshot, append([]string{"Cannot send VM snapshot", "Failed to send migratable component snapshot"}, causes...)...)
	}
	dir, ok := strings.CutPrefix(url, "file://")
	if !ok {
		return fail("Could not extract path from URL: " + url)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fail("Destination is not a directory: " + dir)
	}
	config, err := json.Marshal(s.m.config)
	if err != nil {
		return fail("Error serialising VM config", err.Error())
	}
	// CH opens each snapshot file to read and write, creating it (create_new).
	for _, name := range []string{ConfigFile, StateFile, MemoryFile} {
		if err := s.allow(filepath.Join(dir, name), true, true); err != nil {
			msg := snapshotFileError[name]
			if name == MemoryFile { // memory_manager.rs names the file
				msg = fmt.Sprintf("%s %q", msg, filepath.Join(dir, name))
			}
			return fail(msg, osError(err))
		}
	}
	if err := createNew(filepath.Join(dir, ConfigFile), config); err != nil {
		return fail("Error creating VM config snapshot file", osError(err))
	}
	if s.opts.Faults.SnapshotFail {
		return fail("Error writing memory ranges", osError(syscall.ENOSPC))
	}
	// Snapshotting reads all guest memory: v52 faults in what an on-demand restore has not yet.
	if l := s.m.vm.lazy; l != nil && !s.m.vm.counterKnown {
		n, err := l.touchFirstPage()
		if err != nil {
			return fail("Error reading guest memory", err.Error())
		}
		s.m.vm.counter, s.m.vm.counterKnown = n, true
	}
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	s.guestPlug()
	mem := memoryState{Ranges: guestRanges(s.snapshotRAM()), Plugged: s.m.vm.plugged, Token: hex.EncodeToString(token)}
	tree := snapshotTree{
		Snapshots: map[string]snapshotTree{
			"cpu-manager":    leaf(map[string]any{"vcpus": objectAt(s.m.config, "cpus")["boot_vcpus"]}),
			"memory-manager": leaf(mem),
			"device-manager": leaf(map[string]any{"device_tree": s.m.vm.devices.tree()}),
		},
		SnapshotData: map[string]string{"state": `{"clock":{"tsc":0},"common_cpuid":[]}`},
	}
	state, err := json.Marshal(tree)
	if err != nil {
		return fail("Error serialising VM state", err.Error())
	}
	if err := createNew(filepath.Join(dir, StateFile), state); err != nil {
		return fail("Error creating VM state snapshot file", osError(err))
	}
	if err := writeMemory(filepath.Join(dir, MemoryFile), mem, s.m.vm.counter, s.opts.Faults.Fill); err != nil {
		return fail("Error writing memory ranges", osError(err))
	}
	// Snapshot does not resume the VM.
	return noContent()
}

// snapshotRAM is all guest RAM: boot RAM, ACPI hot-added and virtio-mem plugged.
func (s *Server) snapshotRAM() uint64 {
	return s.m.vm.bootRAM + s.m.vm.acpiAdded + s.m.vm.plugged
}

// createNew writes a new file, failing if it exists (CH opens snapshot files with create_new).
func createNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// writeMemory writes memory-ranges as a sparse file of the RAM's size that starts with the token;
// fill is the percentage of the RAM the guest has used, written after the first page as data
// (see Faults.Fill), the rest left as holes.
func writeMemory(path string, mem memoryState, counter uint64, fill int) error {
	total := mem.total()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(int64(total))
	if err == nil {
		_, err = f.WriteAt([]byte(firstPage(mem.Token, counter)), 0)
	}
	if err == nil && fill > 0 {
		err = writeFill(f, min(total-pageSize, total*uint64(fill)/100))
	}
	if err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// writeFill writes n bytes of used guest memory after the first page: in every 4 KiB page, 1 KiB
// of random bytes and 3 KiB of zeros, which LZ4 shrinks about as much as a real guest's memory.
func writeFill(f *os.File, n uint64) error {
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	rng := mrand.NewChaCha8(seed)
	buf := make([]byte, 1<<20)
	for off := uint64(0); off < n; off += uint64(len(buf)) {
		chunk := buf[:min(uint64(len(buf)), n-off)]
		for p := 0; p < len(chunk); p += pageSize {
			_, _ = rng.Read(chunk[p:min(p+pageSize/4, len(chunk))])
		}
		if _, err := f.WriteAt(chunk, int64(pageSize+off)); err != nil {
			return err
		}
	}
	return nil
}

const actRestore = "The VM could not be restored"

func (s *Server) restore(req any) response {
	r := req.(restoreRequest)
	if s.state() != stateNone {
		return s.fromAPI(http.StatusInternalServerError, actRestore, msgAlreadyCreated)
	}
	onDemand := r.MemoryRestoreMode != nil && *r.MemoryRestoreMode == "OnDemand"
	if r.Prefault != nil && *r.Prefault && onDemand {
		return s.fromAPI(s.opts.Mode.validationStatus(false), actRestore, "Failed to validate config", "'prefault' cannot be combined with 'memory_restore_mode=ondemand'")
	}
	for _, n := range r.NetFds {
		if *n.NumFds > 0 {
			// The FDs would come with the request over SCM_RIGHTS; none did.
			return s.apiError(http.StatusBadRequest, "Bad Request")
		}
	}
	// On any other failure the VMM deletes what it restored so far and is back in NONE.
	fail := func(causes ...string) response {
		s.deleteVM()
		return s.fromAPI(http.StatusInternalServerError, actRestore, causes...)
	}
	dir, ok := strings.CutPrefix(*r.SourceURL, "file://")
	if !ok {
		return fail("Could not extract path from URL: " + *r.SourceURL)
	}
	// A VMM restricted by an earlier vm.create reads the snapshot under its rules.
	if err := s.allow(filepath.Join(dir, ConfigFile), true, false); err != nil {
		return fail(fmt.Sprintf("Error opening VM config snapshot file %q", filepath.Join(dir, ConfigFile)), osError(err))
	}
	cfg, err := readConfig(filepath.Join(dir, ConfigFile))
	if err != nil {
		return fail("Error restoring VM config", err.Error())
	}
	mem, err := readMemoryState(filepath.Join(dir, StateFile))
	if err != nil {
		return fail("Error restoring VM state", err.Error())
	}
	var lazy *lazyMemory
	if onDemand {
		// The userfaultfd comes first; the memory file is opened, and not read.
		if err := checkUserfaultfd(); err != nil {
			return fail("Error restoring memory", "Failed to create userfaultfd", osError(err))
		}
		if lazy, err = openLazy(filepath.Join(dir, MemoryFile), mem); err != nil {
			return fail("Error restoring memory", err.Error())
		}
	}
	var counter uint64
	if lazy == nil {
		if counter, err = checkMemory(filepath.Join(dir, MemoryFile), mem); err != nil {
			return fail("Error restoring memory", err.Error())
		}
	}
	if s.opts.Faults.RestoreFail {
		if lazy != nil {
			lazy.close()
		}
		return fail("Failed to restore migratable component", "injected by the stand-in's restore-fail fault")
	}
	s.m = &machine{config: cfg}
	failLazy := func(chain ...string) response {
		if lazy != nil {
			lazy.close()
		}
		return fail(chain...)
	}
	if chain := s.openConsoles(); chain != nil {
		return failLazy(chain...)
	}
	locks, chain := lockDisks(cfg, s.allow)
	if chain != nil {
		return failLazy(chain...)
	}
	s.vmGenerations++
	// The guest finishes a resize it had not finished when it was snapshotted.
	target, _ := uintAt(objectAt(cfg, "memory"), "hotplugged_size")
	total := mem.total()
	s.m.vm = &vmObject{
		devices:    newDeviceManager(cfg),
		diskLocks:  locks,
		generation: s.vmGenerations,
		paused:     r.Resume == nil || !*r.Resume,
		bootRAM:    ramBytes(cfg),
		acpiAdded:  total - min(total, ramBytes(cfg)+mem.Plugged),
		plugged:    mem.Plugged,
		plugTarget: target,
		plugAt:     time.Now().Add(s.plugDelay()),
		lazy:       lazy,
		// An on-demand restore knows the counter once the guest has touched its first page.
		counter:      counter,
		counterKnown: lazy == nil,
	}
	// The restored config's Landlock rules apply once the devices exist, before the VM runs.
	if chain := s.restrict(cfg); chain != nil {
		return fail(chain...) // the Vm object goes, its memory file and locks with it
	}
	s.startCounter(s.m.vm.generation)
	s.m.consolesFresh = false
	// The guest continues where it was: nothing new appears on its console.
	resp := noContent()
	if lazy != nil {
		resp.after = s.serveOnDemand(lazy, int64(total))
	}
	return resp
}

// serveOnDemand is what runs beside the restored VM: the guest's first touch of its memory once
// it runs (a file that is not this snapshot's crashes the VMM, as a guest on garbage would), and
// from v53 on the background prefault.
func (s *Server) serveOnDemand(lazy *lazyMemory, size int64) func() {
	return func() {
		if s.opts.Mode.atLeast53() {
			lazy.restoring.Store(true)
		}
		gen := s.m.vm.generation
		go func() {
			s.mu.Lock()
			running := s.m != nil && s.m.vm != nil && s.m.vm.generation == gen && !s.m.vm.paused
			s.mu.Unlock()
			if running && !s.touchMemory(lazy, gen) {
				return
			}
			if s.opts.Mode.atLeast53() {
				lazy.prefault(size, s.opts.Faults.PrefaultDelay)
			}
		}()
	}
}

// touchMemory is the restored guest touching its first page, which holds its counter: read on
// demand from the memory file. A file that is not the snapshot's crashes the VMM, as a guest
// running on garbage would; touchMemory then reports false.
func (s *Server) touchMemory(lazy *lazyMemory, gen int) bool {
	n, err := lazy.touchFirstPage()
	if err != nil {
		s.logf("chstandin: the restored guest read garbage from its memory file: %v", err)
		s.Kill()
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if vm := s.vmObject(); vm != nil && vm.generation == gen && !vm.counterKnown {
		vm.counter, vm.counterKnown = n, true
	}
	return true
}

func readConfig(path string) (object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, causef("Failed to read %s: %s", ConfigFile, osError(err))
	}
	cfg, err := parseVMConfig(data)
	if err != nil {
		return nil, causef("Failed to parse %s: %v", ConfigFile, err)
	}
	return cfg.(object), nil
}

func readMemoryState(path string) (memoryState, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return memoryState{}, causef("Failed to read %s: %s", StateFile, osError(err))
	}
	var tree snapshotTree
	if err := json.Unmarshal(data, &tree); err != nil {
		return memoryState{}, causef("Failed to parse %s: %v", StateFile, err)
	}
	var mem memoryState
	section, ok := tree.Snapshots["memory-manager"]
	if !ok {
		return memoryState{}, causef("Missing memory-manager section in %s", StateFile)
	}
	if err := json.Unmarshal([]byte(section.SnapshotData["state"]), &mem); err != nil || mem.Token == "" {
		return memoryState{}, causef("Invalid memory-manager state in %s", StateFile)
	}
	return mem, nil
}

// checkMemory is a Copy restore: the whole memory file is read in (fill_saved_regions), after
// its first page is checked against the snapshot. It returns the guest's counter.
func checkMemory(path string, mem memoryState) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, causef("Failed to open %s: %s", MemoryFile, osError(err))
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if total := mem.total(); uint64(fi.Size()) != total {
		return 0, fmt.Errorf("%s is %d bytes, but the snapshot's memory ranges add up to %d", MemoryFile, fi.Size(), total)
	}
	page := make([]byte, pageSize)
	if _, err := io.ReadFull(f, page); err != nil {
		return 0, fmt.Errorf("%s does not hold the memory of this snapshot", MemoryFile)
	}
	n, err := parseFirstPage(page, mem.Token)
	if err != nil {
		return 0, err
	}
	if _, err := io.CopyBuffer(io.Discard, f, make([]byte, 1<<20)); err != nil {
		return 0, causef("Failed to read %s: %s", MemoryFile, osError(err))
	}
	return n, nil
}

// cause is one message of CH's error chain, worded (and capitalised) as CH words it.
type cause string

func (c cause) Error() string { return string(c) }

func causef(format string, args ...any) error { return cause(fmt.Sprintf(format, args...)) }
