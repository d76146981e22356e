package chstandin

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
)

// machine is what the VMM holds once it has a VM config: CREATED, RUNNING or PAUSED.
type machine struct {
	config object
	// consoles are the serial/console outputs, opened (and truncated) when they are created.
	consoles []io.Writer
	closers  []io.Closer
	// consolesFresh: the consoles were created for this config and no boot has used them yet.
	consolesFresh bool
	// vm is the Vm object, which exists only between boot (or restore) and shutdown.
	vm *vmObject
}

// vmObject is a booted or restored VM.
type vmObject struct {
	paused  bool
	devices *deviceManager
	// diskLocks are the advisory locks CH takes on disk images at boot and restore.
	diskLocks []*os.File
	// generation tells a timer of this Vm from one that fires after a reboot or shutdown.
	generation int
	// powerButtonPending: the button was pressed while paused; the guest sees it on resume.
	powerButtonPending bool
	// cpuRemovalPendingUntil is when the guest finishes ejecting vCPUs after a shrink.
	cpuRemovalPendingUntil time.Time
	// bootRAM is the RAM the Vm was built with; acpiAdded what ACPI hot-add has added since, in
	// acpiHotplugged of the 8 slots.
	bootRAM        uint64
	acpiAdded      uint64
	acpiHotplugged int
	// plugged is the virtio-mem memory the guest has plugged; it reaches plugTarget (the
	// config's hotplugged_size) at plugAt, while the guest runs.
	plugged, plugTarget uint64
	plugAt              time.Time
	// lazy is the memory file of an on-demand restore while the VM still reads from it.
	lazy *lazyMemory
	// counter is the next number the guest's program prints (Faults.Count); it lives in guest
	// memory, so it is unknown after an on-demand restore until the guest touches that page.
	counter      uint64
	counterKnown bool
}

// vmObject is the Vm object, nil without one.
func (s *Server) vmObject() *vmObject {
	if s.m == nil {
		return nil
	}
	return s.m.vm
}

// startCounter runs the guest program of Faults.Count for Vm generation gen: "count N" on the
// serial console every period while the guest runs.
func (s *Server) startCounter(gen int) {
	period := s.opts.Faults.Count
	if period <= 0 {
		return
	}
	go func() {
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
			case <-s.exited:
				return
			}
			s.mu.Lock()
			vm := s.vmObject()
			if s.exiting.Load() || vm == nil || vm.generation != gen {
				s.mu.Unlock()
				return
			}
			if !vm.paused && vm.counterKnown {
				s.guestPrint(fmt.Sprintf("count %d", vm.counter))
				vm.counter++
			}
			s.mu.Unlock()
		}
	}()
}

// guestPlug is the simulated guest catching up with a virtio-mem resize.
func (s *Server) guestPlug() {
	vm := s.m.vm
	if vm == nil || vm.paused || s.opts.Faults.StuckPlug || time.Now().Before(vm.plugAt) {
		return
	}
	vm.plugged = vm.plugTarget
}

func (s *Server) plugDelay() time.Duration {
	if d := s.opts.Faults.PlugDelay; d > 0 {
		return d
	}
	return 50 * time.Millisecond
}

// state is the stand-in's abstract state: whether there is a config, a Vm object, and its state.
type state int

const (
	stateNone state = iota
	stateCreated
	stateRunning
	statePaused
)

func (s *Server) state() state {
	switch {
	case s.m == nil:
		return stateNone
	case s.m.vm == nil:
		return stateCreated
	case s.m.vm.paused:
		return statePaused
	}
	return stateRunning
}

// vmState is what vm.info reports: CH never says "Shutdown" (the Vm object is dropped).
func (s *Server) vmState() string {
	switch s.state() {
	case stateRunning:
		return "Running"
	case statePaused:
		return "Paused"
	}
	return "Created"
}

const (
	msgNotCreated     = "VM is not created"
	msgMissingConfig  = "VM config is missing"
	msgAlreadyCreated = "VM is already created"
	msgNotRunning     = "VM is not running"
)

// notCreated answers an action that needs a VM in NONE.
func (s *Server) notCreated(action, cause string) response {
	return s.fromAPI(s.opts.Mode.notCreatedStatus(), action, cause)
}

func (s *Server) ping() response {
	return jsonResponse(http.StatusOK, map[string]any{
		"build_version": s.opts.Mode.BuildVersion(),
		"version":       s.opts.Mode.Version(),
		"pid":           s.opts.Pid,
		"features":      []string{"io_uring", "kvm", "mshv"},
	})
}

const actCreate = "The VM could not be created"

func (s *Server) create(req any) response {
	if s.m != nil {
		return s.fromAPI(http.StatusInternalServerError, actCreate, msgAlreadyCreated)
	}
	cfg := req.(object)
	s.fillDefaults(cfg)
	if img := firstUnknownImageType(cfg); img != "" {
		s.logf("chstandin: warning: disk %s has no image_type: autodetection is deprecated since v52", img)
	}
	// The config is stored before the consoles are made, so a console failure leaves it behind.
	s.m = &machine{config: cfg}
	if chain := s.openConsoles(); chain != nil {
		return s.fromAPI(http.StatusInternalServerError, actCreate, chain...)
	}
	// Landlock comes last, once the consoles exist: the config stays if it fails.
	if chain := s.restrict(cfg); chain != nil {
		return s.fromAPI(http.StatusInternalServerError, actCreate, chain...)
	}
	return noContent()
}

func firstUnknownImageType(cfg object) string {
	for _, d := range objectsAt(cfg, "disks") {
		if t, _ := stringAt(d, "image_type"); t == "Unknown" {
			p, _ := stringAt(d, "path")
			return p
		}
	}
	return ""
}

// openConsoles creates the serial, console and debug console outputs. File mode truncates, as CH
// does at create, at a boot after shutdown, at reboot and at restore. A failure is CH's error
// chain.
func (s *Server) openConsoles() []string {
	s.closeConsoles()
	for _, name := range []string{"serial", "console", "debug_console"} {
		con := objectAt(s.m.config, name)
		mode, _ := stringAt(con, "mode")
		switch mode {
		case "File":
			path, ok := stringAt(con, "file")
			if !ok {
				continue // reported by validation at boot
			}
			if err := s.allow(path, false, true); err != nil {
				return []string{fmt.Sprintf("Error creating %s output file", name), osError(err)}
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return []string{fmt.Sprintf("Error creating %s output file", name), err.Error()}
			}
			s.m.consoles = append(s.m.consoles, f)
			s.m.closers = append(s.m.closers, f)
		case "Tty":
			if name == "serial" {
				s.m.consoles = append(s.m.consoles, s.opts.Stdout)
			}
		case "Socket":
			if name != "serial" {
				return []string{"No socket option support for console device"}
			}
			return []string{"the stand-in does not emulate serial mode Socket"}
		case "Pty":
			return []string{fmt.Sprintf("the stand-in does not emulate %s mode Pty", name)}
		}
	}
	s.m.consolesFresh = true
	return nil
}

func (s *Server) closeConsoles() {
	for _, c := range s.m.closers {
		_ = c.Close()
	}
	s.m.consoles, s.m.closers = nil, nil
}

// guestPrint is the simulated guest writing a line on its serial port.
func (s *Server) guestPrint(line string) {
	if len(s.m.consoles) == 0 {
		return
	}
	_, _ = io.WriteString(s.m.consoles[0], line+"\n")
}

const actBoot = "The VM could not boot"

func (s *Server) boot() response {
	switch s.state() {
	case stateNone:
		return s.notCreated(actBoot, msgMissingConfig)
	case stateRunning, statePaused:
		return s.fromAPI(http.StatusInternalServerError, actBoot, msgAlreadyCreated)
	}
	if err := validateConfig(s.m.config); err != nil {
		return s.fromAPI(s.opts.Mode.validationStatus(err.duplicate), actBoot, "Failed to validate config", err.msg)
	}
	if d := s.opts.Faults.BootDelay; d > 0 {
		select {
		case <-time.After(d):
		case <-s.killed:
			panic(http.ErrAbortHandler)
		}
	}
	if !s.m.consolesFresh {
		if chain := s.openConsoles(); chain != nil {
			return s.fromAPI(http.StatusInternalServerError, actBoot, chain...)
		}
	}
	if chain := s.buildVM(); chain != nil {
		return s.fromAPI(http.StatusInternalServerError, actBoot, chain...)
	}
	s.guestPrint(system.MarkerStarted)
	resp := noContent()
	if s.opts.Faults.DieAfterBoot {
		delay := s.opts.Faults.DieDelay
		resp.after = func() { time.AfterFunc(delay, s.Kill) }
	}
	return resp
}

// buildVM makes the Vm object from the config: payload files checked, disks opened and locked,
// device ids assigned.
func (s *Server) buildVM() []string {
	payload := objectAt(s.m.config, "payload")
	for _, key := range []string{"kernel", "firmware", "initramfs"} {
		if p, ok := stringAt(payload, key); ok {
			if _, err := os.Stat(p); err != nil {
				return []string{fmt.Sprintf("Error loading %s", key), err.Error()}
			}
			if err := s.allow(p, true, false); err != nil {
				return []string{fmt.Sprintf("Error loading %s", key), osError(err)}
			}
		}
	}
	locks, chain := lockDisks(s.m.config, s.allow)
	if chain != nil {
		return chain
	}
	s.vmGenerations++
	// Memory plugged at boot (hotplugged_size) is there from the start.
	plugged, _ := uintAt(objectAt(s.m.config, "memory"), "hotplugged_size")
	s.m.vm = &vmObject{devices: newDeviceManager(s.m.config), diskLocks: locks, generation: s.vmGenerations,
		bootRAM: ramBytes(s.m.config), plugged: plugged, plugTarget: plugged, counterKnown: true}
	s.m.consolesFresh = false
	s.startCounter(s.vmGenerations)
	return nil
}

// lockDisks takes CH's advisory locks: shared for read-only images, exclusive otherwise.
func lockDisks(cfg object, allow func(path string, read, write bool) error) ([]*os.File, []string) {
	var locks []*os.File
	fail := func(chain ...string) ([]*os.File, []string) {
		for _, f := range locks {
			_ = f.Close()
		}
		return nil, chain
	}
	for _, d := range objectsAt(cfg, "disks") {
		path, ok := stringAt(d, "path")
		if !ok {
			continue
		}
		flag, how := os.O_RDWR, unix.LOCK_EX
		if boolAt(d, "readonly") {
			flag, how = os.O_RDONLY, unix.LOCK_SH
		}
		if err := allow(path, true, flag == os.O_RDWR); err != nil {
			return fail("Error opening disk image", fmt.Sprintf("Failed to open disk file %s: %s", path, osError(err)))
		}
		f, err := os.OpenFile(path, flag, 0)
		if err != nil {
			return fail("Error opening disk image", fmt.Sprintf("Failed to open disk file %s: %v", path, err))
		}
		locks = append(locks, f)
		if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
			return fail("Error locking disk images: Another instance likely holds a lock", fmt.Sprintf("The disk image %s is locked: %v", path, err))
		}
	}
	return locks, nil
}

// dropVM is the Vm object going away (shutdown, delete, exit): its locks are released.
func (s *Server) dropVM() {
	if s.m == nil || s.m.vm == nil {
		return
	}
	for _, f := range s.m.vm.diskLocks {
		_ = f.Close()
	}
	if s.m.vm.lazy != nil {
		s.m.vm.lazy.close()
	}
	s.m.vm = nil
}

func (s *Server) deleteVM() {
	if s.m == nil {
		return
	}
	s.dropVM()
	s.closeConsoles()
	s.m = nil
}

const (
	actPause  = "The VM could not be paused"
	actResume = "The VM could not resume"
)

func (s *Server) pause() response {
	switch s.state() {
	case stateNone, stateCreated:
		return s.fromAPI(http.StatusInternalServerError, actPause, msgNotRunning)
	case statePaused:
		return s.fromAPI(http.StatusInternalServerError, actPause, "Cannot pause VM", "Failed to pause migratable component", "Invalid transition: InvalidStateTransition(Paused, Paused)")
	}
	s.m.vm.paused = true
	return noContent()
}

func (s *Server) resume() response {
	switch s.state() {
	case stateNone, stateCreated:
		return s.fromAPI(http.StatusInternalServerError, actResume, msgNotRunning)
	case stateRunning:
		return s.fromAPI(http.StatusInternalServerError, actResume, "Cannot resume VM", "Failed to resume migratable component", "Invalid transition: InvalidStateTransition(Running, Running)")
	}
	s.m.vm.paused = false
	if l := s.m.vm.lazy; l != nil && !s.m.vm.counterKnown {
		// A guest restored on demand and left paused touches its memory now.
		go s.touchMemory(l, s.m.vm.generation)
	}
	if s.m.vm.powerButtonPending {
		s.m.vm.powerButtonPending = false
		s.schedulePowerOff()
	}
	return noContent()
}

func (s *Server) shutdown() response {
	switch s.state() {
	case stateNone, stateCreated:
		return s.fromAPI(http.StatusInternalServerError, "The VM could not shutdown", msgNotRunning)
	}
	// The Vm object is dropped and the config kept: vm.info says "Created" again.
	s.dropVM()
	return noContent()
}

func (s *Server) reboot() response {
	const act = "The VM could not reboot"
	switch s.state() {
	case stateNone, stateCreated:
		// VmNotCreated even when a config exists.
		return s.notCreated(act, msgNotCreated)
	}
	s.dropVM()
	if chain := s.openConsoles(); chain != nil {
		return s.fromAPI(http.StatusInternalServerError, act, chain...)
	}
	if chain := s.buildVM(); chain != nil {
		return s.fromAPI(http.StatusInternalServerError, act, chain...)
	}
	s.guestPrint(system.MarkerStarted)
	return noContent()
}

func (s *Server) powerButton() response {
	switch s.state() {
	case stateNone, stateCreated:
		return s.fromAPI(http.StatusInternalServerError, "Error triggering power button", msgNotRunning)
	case statePaused:
		s.m.vm.powerButtonPending = true
	case stateRunning:
		s.schedulePowerOff()
	}
	return noContent()
}

// schedulePowerOff is the simulated guest shutting down after the ACPI power button: the VMM
// then exits 0, as CH does without --no-shutdown.
func (s *Server) schedulePowerOff() {
	if s.opts.Faults.IgnorePowerButton {
		return
	}
	gen := s.m.vm.generation
	time.AfterFunc(s.opts.PowerOffDelay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.exiting.Load() || s.state() != stateRunning || s.m.vm.generation != gen {
			return
		}
		s.deleteVM()
		s.beginExit(0, false)
	})
}

func (s *Server) nmi() response {
	switch s.state() {
	case stateNone, stateCreated:
		return s.fromAPI(http.StatusInternalServerError, "Error triggering NMI", msgNotRunning)
	}
	return noContent()
}

func (s *Server) delete() response {
	s.deleteVM()
	return noContent()
}

func (s *Server) vmmShutdown() response {
	s.deleteVM()
	s.releaseLandlock()
	// 200 with an empty body (the spec says 204); the process exits once it is sent.
	return response{status: http.StatusOK, after: func() { s.beginExit(0, false) }}
}

func (s *Server) info() response {
	if s.m == nil {
		return s.notCreated("The VM info is not available", msgNotCreated)
	}
	info := map[string]any{
		"config":             s.m.config,
		"state":              s.vmState(),
		"memory_actual_size": s.memoryActualSize(),
	}
	if s.m.vm != nil {
		info["device_tree"] = s.m.vm.devices.tree()
	}
	return jsonResponse(http.StatusOK, info)
}

// memoryActualSize = size + zones − balloon + plugged virtio-mem; size + zones before boot.
func (s *Server) memoryActualSize() uint64 {
	if s.m.vm == nil {
		return ramBytes(s.m.config)
	}
	s.guestPlug()
	size := s.m.vm.bootRAM + s.m.vm.acpiAdded + s.m.vm.plugged
	if b := objectAt(s.m.config, "balloon"); b != nil {
		balloon, _ := uintAt(b, "size")
		size -= min(balloon, size)
	}
	return size
}

func (s *Server) counters() response {
	switch s.state() {
	case stateNone, stateCreated:
		return s.fromAPI(http.StatusInternalServerError, "The VM info is not available", msgNotRunning)
	}
	return jsonResponse(http.StatusOK, s.m.vm.devices.counters(s.m.config))
}

func migrationUnsupported(act string) func(*Server, any) response {
	return func(s *Server, _ any) response {
		return s.fromAPI(http.StatusInternalServerError, act, "the stand-in does not emulate live migration")
	}
}

func parseMigration(field string) func([]byte) (any, error) {
	return func(body []byte) (any, error) {
		obj, err := parseObject(body, &struct{}{})
		if err != nil {
			return nil, err
		}
		var c serdeChecks
		_, ok := obj[field].(string)
		c.required(ok, field)
		return obj, c.err
	}
}
