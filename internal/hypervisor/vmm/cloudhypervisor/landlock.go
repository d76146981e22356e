package cloudhypervisor

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// Landlock (docs/adr/0013-cloud-hypervisor-landlock.md). With landlock_enable in vm.create,
// Cloud Hypervisor restricts its VMM thread, and every vCPU and device thread it starts later, to
// the files the VM config names: kernel and initramfs (read), disks, serial file, rng source and,
// with a network interface, /dev/net/tun. It builds that ruleset itself at vm.create, and again at
// vm.restore from the snapshot's config.json, which carries landlock_enable and landlock_rules
// along. What it cannot know is where snapshots will be written: that is the one rule the driver
// adds.
//
// A Landlock rule binds to the inode its path names when the ruleset is made, not to the path.
// The manager makes a new directory for every snapshot and removes the snapshots after a restore,
// so no snapshot directory lives as long as the VMM; the instance directory does. The rule is
// therefore the instance directory, read-write: CH opens each snapshot file to read and write
// (create_new).

// landlockAccess is the access the snapshot rule grants: CH opens snapshot files read-write.
const landlockAccess = "rw"

// landlockRules are the rules the driver adds to those CH derives from the VM config.
func landlockRules(cfg vmm.Config) []landlockConfig {
	return []landlockConfig{{Path: cfg.Dir, Access: landlockAccess}}
}

// withinRules refuses a snapshot directory the VMM's Landlock rules do not reach, before the
// VMM is asked: it would fail with "Permission denied (os error 13)" and say no more.
func withinRules(cfg vmm.Config, dir string) error {
	rel, err := filepath.Rel(cfg.Dir, filepath.Clean(dir))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("snapshot directory %s is outside the instance directory %s: cloud-hypervisor runs under Landlock and writes snapshots only beneath it", dir, cfg.Dir)
	}
	return nil
}

// landlockHint says what to do when CH could not apply its Landlock ruleset: the host kernel
// lacks Landlock, which the driver never runs a VMM without.
func landlockHint(err error) error {
	var apiErr *APIError
	if !errors.As(err, &apiErr) || !slices.ContainsFunc(apiErr.Messages, func(m string) bool { return strings.Contains(m, "landlock") }) {
		return err
	}
	return fmt.Errorf("%w (cloud-hypervisor sandboxes itself with Landlock, which needs Landlock ABI 3 in the host's kernel: Linux 6.2 or later, with landlock in its lsm= list; on an older kernel, set hypervisor = \"qemu\", which runs under its own seccomp sandbox)", err)
}
