package chstandin

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Landlock as Cloud Hypervisor applies it (vmm/src/landlock.rs, VmConfig::apply_landlock in
// vmm/src/vm_config.rs): with landlock_enable in the config, vm.create (and vm.restore, once the
// snapshot is read in and the devices exist) restricts the VMM thread to a ruleset made of the
// config's own files plus landlock_rules. The restriction is for good: a later vm.delete does not
// lift it, and a second vm.create adds a second layer. The stand-in models what makes a missing
// rule visible:
//
//   - rules bind to the file or directory that a path names when the ruleset is made (the kernel
//     holds the inode, not the path), and a path that does not exist then is skipped silently
//     (path_beneath_rules in the landlock crate); a directory made afterwards at that path is
//     not covered;
//   - a rule on a directory covers everything beneath it; a rule on a file grants only the file
//     rights (read, write, truncate), never creating or removing entries;
//   - "r" grants reading, "w" writing, truncating, creating and removing entries, "rw" both;
//   - an access the ruleset does not grant fails with EACCES, "Permission denied (os error 13)".

// Rights the stand-in tells apart; each stands for the group of Landlock access rights CH's "r"
// or "w" expands to (LandlockAccess::try_from).
type llRights uint8

const (
	llReadFile  llRights = 1 << iota // ReadFile, Execute
	llReadDir                        // ReadDir
	llWriteFile                      // WriteFile, Truncate
	llMakeEntry                      // MakeReg, MakeDir, MakeSock, ..., RemoveFile, RemoveDir, Refer

	llFileRights = llReadFile | llWriteFile
)

// llAccess reads a rule's access the way LandlockAccess::try_from does.
func llAccess(s string) (llRights, error) {
	if s == "" {
		return 0, cause("Invalid Landlock access: Access cannot be empty")
	}
	var r llRights
	for _, c := range s {
		switch c {
		case 'r':
			r |= llReadFile | llReadDir
		case 'w':
			r |= llWriteFile | llMakeEntry
		default:
			return 0, causef("Invalid Landlock access: Invalid access: %c", c)
		}
	}
	return r, nil
}

type inode struct{ dev, ino uint64 }

func inodeOf(fi os.FileInfo) (inode, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return inode{}, false
	}
	return inode{st.Dev, st.Ino}, true
}

// llLayer is one ruleset: the rights granted on each inode. Like the kernel, it holds each
// rule's file open, so that its inode stays allocated (and its number unused) for as long as
// the ruleset lives, even after the path is removed.
type llLayer struct {
	rights map[inode]llRights
	held   []*os.File
}

// llRule is one path and access of the ruleset CH builds.
type llRule struct{ path, access string }

// landlockRules is the ruleset VmConfig::apply_landlock builds from cfg, in its order.
func landlockRules(cfg object) []llRule {
	var rules []llRule
	for _, z := range objectsAt(objectAt(cfg, "memory"), "zones") {
		if f, ok := stringAt(z, "file"); ok {
			rules = append(rules, llRule{f, "rw"})
		}
	}
	for _, d := range objectsAt(cfg, "disks") {
		if p, ok := stringAt(d, "path"); ok {
			rules = append(rules, llRule{p, "rw"}) // read-only disks too, as CH does
		}
	}
	if src, ok := stringAt(objectAt(cfg, "rng"), "src"); ok {
		rules = append(rules, llRule{src, "r"})
	}
	for _, key := range []string{"fs", "generic_vhost_user", "user_devices"} {
		for _, d := range objectsAt(cfg, key) {
			if s, ok := stringAt(d, "socket"); ok {
				rules = append(rules, llRule{s, "rw"})
			}
		}
	}
	for _, p := range objectsAt(cfg, "pmem") {
		access := "rw"
		if boolAt(p, "discard_writes") {
			access = "r"
		}
		if f, ok := stringAt(p, "file"); ok {
			rules = append(rules, llRule{f, access})
		}
	}
	for _, name := range []string{"console", "serial", "debug_console"} {
		con := objectAt(cfg, name)
		if mode, _ := stringAt(con, "mode"); mode == "Pty" {
			rules = append(rules, llRule{"/dev/pts", "rw"}, llRule{"/dev/ptmx", "rw"})
		}
		for _, key := range []string{"file", "socket"} {
			if f, ok := stringAt(con, key); ok {
				rules = append(rules, llRule{f, "rw"})
			}
		}
	}
	if len(objectsAt(cfg, "devices")) > 0 {
		rules = append(rules, llRule{"/dev/vfio/vfio", "rw"})
	}
	for _, d := range objectsAt(cfg, "vdpa") {
		if p, ok := stringAt(d, "path"); ok {
			rules = append(rules, llRule{p, "rw"})
		}
	}
	if v := objectAt(cfg, "vsock"); v != nil {
		if s, ok := stringAt(v, "socket"); ok {
			rules = append(rules, llRule{filepath.Dir(s), "w"}, llRule{s, "rw"})
		}
	}
	payload := objectAt(cfg, "payload")
	for _, key := range []string{"firmware", "kernel", "initramfs"} {
		if p, ok := stringAt(payload, key); ok {
			rules = append(rules, llRule{p, "r"})
		}
	}
	if s, ok := stringAt(objectAt(cfg, "tpm"), "socket"); ok {
		rules = append(rules, llRule{s, "rw"})
	}
	if len(listAt(cfg, "net")) > 0 {
		rules = append(rules, llRule{"/dev/net/tun", "rw"})
	}
	for _, r := range objectsAt(cfg, "landlock_rules") {
		p, _ := stringAt(r, "path")
		a, _ := stringAt(r, "access")
		rules = append(rules, llRule{p, a})
	}
	return rules
}

// newLayer builds the ruleset for rules as the kernel would hold it. An invalid access fails the
// whole ruleset, with LandlockError's message.
func newLayer(rules []llRule) (*llLayer, error) {
	layer := &llLayer{rights: map[inode]llRights{}}
	for _, r := range rules {
		rights, err := llAccess(r.access)
		if err != nil {
			layer.release()
			return nil, err
		}
		fd, err := unix.Open(r.path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // path_beneath_rules skips what it cannot open
		}
		f := os.NewFile(uintptr(fd), r.path)
		fi, err := f.Stat()
		if err != nil {
			_ = f.Close()
			continue
		}
		layer.held = append(layer.held, f)
		if !fi.IsDir() {
			rights &= llFileRights
		}
		if ino, ok := inodeOf(fi); ok {
			layer.rights[ino] |= rights
		}
	}
	return layer, nil
}

func (layer *llLayer) release() {
	for _, f := range layer.held {
		_ = f.Close()
	}
	layer.held = nil
}

// releaseLandlock is the VMM process ending: the kernel drops its rulesets.
func (s *Server) releaseLandlock() {
	for _, layer := range s.landlock {
		layer.release()
	}
	s.landlock = nil
}

// restrict applies the Landlock ruleset of cfg to the VMM, if cfg enables it. It returns the
// error chain below "Failed to apply landlock config during vm_create".
func (s *Server) restrict(cfg object) []string {
	if !boolAt(cfg, "landlock_enable") {
		return nil
	}
	if s.opts.Faults.NoLandlock {
		// Landlock::new asks for ABI 3 as a hard requirement; the rest is the landlock crate's.
		return []string{"Failed to apply landlock config during vm_create", "Error creating/adding/restricting ruleset",
			"the running kernel does not support Landlock ABI 3 (stand-in fault no-landlock)"}
	}
	layer, err := newLayer(landlockRules(cfg))
	if err != nil {
		return []string{"Failed to apply landlock config during vm_create", err.Error()}
	}
	s.landlock = append(s.landlock, layer)
	return nil
}

// granted is what layer grants on path: the union of the rules on it and on every directory
// above it.
func (layer *llLayer) granted(path string) llRights {
	var rights llRights
	for p := path; ; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil {
			if ino, ok := inodeOf(fi); ok {
				rights |= layer.rights[ino]
			}
		}
		if p == "/" || p == "." {
			return rights
		}
	}
}

// errLandlock is a file access the VMM's Landlock ruleset refuses.
var errLandlock = syscall.EACCES

// allow says whether the VMM may open path for reading and/or writing, creating it when it does
// not exist (the right to create is the directory's above it). Without Landlock, everything is.
func (s *Server) allow(path string, read, write bool) error {
	if len(s.landlock) == 0 {
		return nil
	}
	path = filepath.Clean(path)
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		path = resolved
	}
	var want llRights
	if read {
		want |= llReadFile
	}
	if write {
		want |= llWriteFile
	}
	_, statErr := os.Stat(path)
	creating := errors.Is(statErr, os.ErrNotExist)
	for _, layer := range s.landlock {
		if layer.granted(path)&want != want {
			return errLandlock
		}
		if creating && layer.granted(filepath.Dir(path))&llMakeEntry == 0 {
			return errLandlock
		}
	}
	return nil
}

// validateLandlockRules is LandlockConfig::validate, run for every rule at vm.boot.
func validateLandlockRules(cfg object) *configError {
	for _, r := range objectsAt(cfg, "landlock_rules") {
		p, _ := stringAt(r, "path")
		if _, err := os.Stat(p); err != nil {
			return invalid("Path %q provided in landlock-rules does not exist", p)
		}
		a, _ := stringAt(r, "access")
		if _, err := llAccess(a); err != nil {
			return invalid("Invalid landlock access: %s", err.Error())
		}
	}
	return nil
}
