package chstandin

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Faults are failures the stand-in injects on purpose, so that tests can watch a client cope.
type Faults struct {
	// SnapshotFail makes vm.snapshot write config.json and then fail with a 500 (disk full); the VM
	// stays Paused, as on the real server.
	SnapshotFail bool
	// RestoreFail makes vm.restore fail with a 500 after reading the snapshot; the VMM resets to
	// NONE, as on the real server.
	RestoreFail bool
	// BootDelay makes vm.boot take this long (blocking every other request meanwhile).
	BootDelay time.Duration
	// StartDelay makes the binary wait this long before it binds its API socket.
	StartDelay time.Duration
	// DieAfterBoot makes the VMM process die (SIGKILL, socket left behind) DieDelay after vm.boot
	// answered.
	DieAfterBoot bool
	DieDelay     time.Duration
	// IgnorePowerButton makes the simulated guest ignore the ACPI power button.
	IgnorePowerButton bool
	// TextErrors makes error bodies plain text lines, as v38–v46 sent them, instead of JSON arrays.
	TextErrors bool
	// PlugDelay is how long the simulated guest takes to plug or unplug virtio-mem memory after
	// a resize; 0 means 50ms. StuckPlug makes it never do so.
	PlugDelay time.Duration
	StuckPlug bool
	// Fill is the percentage of its RAM the simulated guest has used: its snapshots' memory files
	// hold that much data (1 KiB of random bytes in every 4 KiB page) instead of holes, which
	// copying restores then read in.
	Fill int
	// Count makes the simulated guest's program print "count N" on the serial console every
	// Count while it runs, N from 0 and kept in its memory across snapshot and restore: a guest
	// restored on demand goes on counting once it has read that memory back.
	Count time.Duration
	// NoLandlock makes the kernel lack Landlock ABI 3: a config with landlock_enable fails
	// vm.create (and vm.restore) as CH does when it cannot create its ruleset.
	NoLandlock bool
	// PrefaultDelay is the least time the background prefault after an on-demand restore takes
	// (v53 on), during which vm.snapshot answers "still in progress".
	PrefaultDelay time.Duration
}

// FaultsEnv is the environment variable the binary reads its faults from, as ParseFaults accepts.
const FaultsEnv = "HYPEMAN_STANDIN_FAULTS"

// ModeEnv is the environment variable the binary reads its mode from (v52, v53 or head).
const ModeEnv = "HYPEMAN_STANDIN_MODE"

// FaultNames documents what ParseFaults accepts.
const FaultNames = "snapshot-500, restore-fail, slow-boot=DURATION, slow-start=DURATION, die-after-boot[=DURATION], ignore-power-button, text-errors, no-landlock, slow-plug=DURATION, stuck-plug, fill=PERCENT, slow-prefault=DURATION, count=DURATION"

// ParseFaults reads a comma-separated fault list such as "snapshot-500,slow-boot=5s".
func ParseFaults(s string) (Faults, error) {
	var f Faults
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, value, hasValue := strings.Cut(item, "=")
		duration := func() (time.Duration, error) {
			d, err := time.ParseDuration(value)
			if err != nil || d < 0 {
				return 0, fmt.Errorf("fault %q: %q is not a duration such as 5s", name, value)
			}
			return d, nil
		}
		var err error
		switch {
		case name == "slow-boot" && hasValue:
			f.BootDelay, err = duration()
		case name == "slow-start" && hasValue:
			f.StartDelay, err = duration()
		case name == "slow-plug" && hasValue:
			f.PlugDelay, err = duration()
		case name == "count" && hasValue:
			f.Count, err = duration()
		case name == "slow-prefault" && hasValue:
			f.PrefaultDelay, err = duration()
		case name == "fill" && hasValue:
			f.Fill, err = strconv.Atoi(strings.TrimSuffix(value, "%"))
			if err != nil || f.Fill < 0 || f.Fill > 100 {
				err = fmt.Errorf("fault %q: %q is not a percentage from 0 to 100", name, value)
			}
		case name == "die-after-boot":
			f.DieAfterBoot = true
			if hasValue {
				f.DieDelay, err = duration()
			}
		case hasValue:
			err = fmt.Errorf("fault %q does not take a value here; known faults: %s", item, FaultNames)
		case name == "snapshot-500":
			f.SnapshotFail = true
		case name == "restore-fail":
			f.RestoreFail = true
		case name == "ignore-power-button":
			f.IgnorePowerButton = true
		case name == "text-errors":
			f.TextErrors = true
		case name == "stuck-plug":
			f.StuckPlug = true
		case name == "no-landlock":
			f.NoLandlock = true
		default:
			err = fmt.Errorf("unknown fault %q; known faults: %s", item, FaultNames)
		}
		if err != nil {
			return Faults{}, err
		}
	}
	return f, nil
}
