package instances

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// What the settings and a Spec ask of the host, checked before anything is done on it.

// maxSocketPath is the longest unix socket path: sun_path holds 108 bytes, a NUL included.
const maxSocketPath = 107

// MaxDataDirLen is the longest data_dir whose instances' VMM control sockets, at
// {data_dir}/guests/{ulid}/{socket}, stay within a unix socket path for every driver, with a
// margin as long as ".lock" (a lock file beside a socket is a plain file, which sun_path does
// not limit).
func MaxDataDirLen(drivers []vmm.Driver) int {
	longest := 0
	for _, d := range drivers {
		longest = max(longest, len(d.SocketName()))
	}
	return maxSocketPath - len("/guests/") - 26 - len("/") - longest - len(".lock")
}

// DataDirRule describes a data_dir for drivers, for error messages and documentation.
func DataDirRule(drivers []vmm.Driver) string {
	return fmt.Sprintf("an absolute path on the host of at most %d bytes (the VMMs' control sockets live under it, and a unix socket path "+
		"has at most %d bytes); leave data_dir out for the default %s", MaxDataDirLen(drivers), maxSocketPath, DefaultDataDir)
}

// ValidateDataDir checks a data_dir as written, without the host.
func ValidateDataDir(dir string, drivers []vmm.Driver) error {
	if !strings.HasPrefix(dir, "/") || strings.ContainsRune(dir, 0) {
		return &FieldError{Field: "data_dir", Value: dir, Allowed: DataDirRule(drivers)}
	}
	if limit := MaxDataDirLen(drivers); len(dir) > limit {
		return configError(fmt.Sprintf("data_dir %q has %d bytes, more than the %d allowed: the VMMs' control sockets live under it, at "+
			"guests/<id>/<socket>, and a unix socket path has at most %d bytes; use a shorter absolute path, or leave data_dir out for the default %s",
			dir, len(dir), limit, maxSocketPath, DefaultDataDir))
	}
	return nil
}

// CheckDataDir checks data_dir on the host: it may be missing (it is created on first use, 0700),
// but what is there must be a directory that only the user the provider runs as there (root,
// normally; the SSH user over SSH) can change, in a place nobody else can swap it out of. Instance
// directories hold config disks with env values and the VMMs' sockets: anyone who can write
// data_dir, or replace it, can read or redirect them.
func CheckDataDir(ctx context.Context, h host.Host, dir string) error {
	const allowed = "allowed: a directory, or a path where one can be created"
	fi, err := h.Stat(ctx, dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return checkDataDirParents(ctx, h, dir, true)
	case err != nil:
		return configError(fmt.Sprintf("data_dir %q cannot be used: %v; %s", dir, err, allowed))
	case !fi.IsDir():
		return configError(fmt.Sprintf("data_dir %q is a %s on the host, not a directory; %s", dir, fileKind(fi.Mode()), allowed))
	}
	me, err := host.UID(ctx, h)
	if err != nil {
		return configError(fmt.Sprintf("data_dir %q cannot be checked: %v", dir, err))
	}
	if err := checkDataDirMode(dir, fi, me); err != nil {
		return err
	}
	return checkDataDirParents(ctx, h, dir, false)
}

// checkDataDirMode refuses a data_dir that others can write, or that another user owns.
func checkDataDirMode(dir string, fi fs.FileInfo, me uint32) error {
	uid, gid, ok := host.Owner(fi)
	perm := fi.Mode().Perm()
	seen := fmt.Sprintf("mode %04o, owner %d:%d", perm, uid, gid)
	switch {
	case !ok:
		return nil // a host that does not say who owns its files
	case perm&0o002 != 0:
		return configError(fmt.Sprintf("data_dir %q is writable by every user on the host (%s): anyone could read or replace the instances' "+
			"config disks, which hold their env values, and their VMM sockets; make it private with `chmod 0700 %s`", dir, seen, dir))
	case perm&0o020 != 0 && gid != 0:
		return configError(fmt.Sprintf("data_dir %q is writable by the members of group %d (%s): they could read or replace the instances' "+
			"config disks, which hold their env values, and their VMM sockets; make it private with `chmod 0700 %s`", dir, gid, seen, dir))
	case uid != me:
		return configError(fmt.Sprintf("data_dir %q belongs to user %d (%s), not to user %d, whom the provider runs as on the host: its owner "+
			"could read or replace the instances' files; give it to that user with `chown %s %s` and make it private with `chmod 0700 %s`",
			dir, uid, seen, me, chownTo(me), dir, dir))
	}
	return nil
}

// chownTo is the owner argument of chown for uid: root:root for root, else the numeric user.
func chownTo(uid uint32) string {
	if uid == 0 {
		return "root:root"
	}
	return strconv.FormatUint(uint64(uid), 10)
}

// checkDataDirParents refuses a data_dir in a directory that others can write without the sticky
// bit: they could rename it away and put their own directory (or a link) in its place. A data_dir
// that is missing is refused under any directory others can write, sticky or not: they could make
// it first.
func checkDataDirParents(ctx context.Context, h host.Host, dir string, missing bool) error {
	for p := path.Dir(path.Clean(dir)); ; p = path.Dir(p) {
		fi, err := h.Stat(ctx, p)
		nearest := missing && err == nil
		if err == nil && fi.IsDir() && (fi.Mode()&fs.ModeSticky == 0 || nearest) {
			_, gid, _ := host.Owner(fi)
			perm := fi.Mode().Perm()
			if perm&0o002 != 0 || perm&0o020 != 0 && gid != 0 {
				who := "every user on the host"
				if perm&0o002 == 0 {
					who = fmt.Sprintf("the members of group %d", gid)
				}
				how := "no sticky bit"
				if fi.Mode()&fs.ModeSticky != 0 {
					how = "and data_dir does not exist yet"
				}
				return configError(fmt.Sprintf("data_dir %q is inside %s, which %s can write (mode %04o, %s): they could replace data_dir "+
					"with a directory or link of their own; use a data_dir whose parents only root can write, or fix the parent with `chmod o-w,g-w %s`",
					dir, p, who, perm, how, p))
			}
		}
		if err == nil {
			missing = false // the nearest existing directory is the one that could be raced
		}
		if p == "/" || p == "." {
			return nil
		}
	}
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "file"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file (" + m.Type().String() + ")"
}

// hostMemory caches the host's memory; it does not change while a provider runs.
type hostMemory struct {
	mu    sync.Mutex
	bytes int64
}

// HostMemory is the host's physical memory in bytes (MemTotal of /proc/meminfo), read once.
func (m *Manager) HostMemory(ctx context.Context) (int64, error) {
	m.memory.mu.Lock()
	defer m.memory.mu.Unlock()
	if m.memory.bytes > 0 {
		return m.memory.bytes, nil
	}
	b, err := m.host.ReadFile(ctx, "/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("read the host's memory size: %w", err)
	}
	n, err := memTotal(b)
	if err != nil {
		return 0, err
	}
	m.memory.bytes = n
	return n, nil
}

// memTotal reads the "MemTotal: N kB" line of /proc/meminfo.
func memTotal(meminfo []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "MemTotal:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || kb <= 0 {
				break
			}
			return kb * units.KiB, nil
		}
	}
	return 0, errors.New("no MemTotal line in the host's /proc/meminfo")
}

// CheckMemoryFits refuses a guest whose memory and hotplug memory together exceed the host's
// memory: it could never have all it asks for. A host whose memory cannot be read is not refused.
func (m *Manager) CheckMemoryFits(ctx context.Context, memory, hotplug int64) error {
	total, err := m.HostMemory(ctx)
	if err != nil || memory+hotplug <= total {
		return nil
	}
	host := fmt.Sprintf("the host's %s of memory (MemTotal of its /proc/meminfo)", formatMemory(total))
	if memory > total || hotplug == 0 {
		allowed := "at most " + host
		if hotplug > 0 {
			allowed += ", hotplug_memory included"
		}
		return &FieldError{Field: "memory", Value: units.Format(memory), Allowed: allowed}
	}
	return &FieldError{Field: "hotplug_memory", Value: units.Format(hotplug), Allowed: fmt.Sprintf(
		"at most %s with memory %s, as both together must fit in %s", formatMemory(total-memory), units.Format(memory), host)}
}

// formatMemory writes a host's memory, which is rarely whole MiB, to a tenth of a GiB.
func formatMemory(n int64) string {
	if n%units.MiB == 0 {
		return units.Format(n)
	}
	return strconv.FormatFloat(float64(n)/float64(units.GiB), 'f', 1, 64) + "GiB"
}

// CheckVolumeTools finds the e2fsprogs programs that make and grow volumes (ext4Tools) on the
// host, and says which are missing.
func (m *Manager) CheckVolumeTools(ctx context.Context) error {
	var missing []string
	for _, t := range ext4Tools {
		if _, err := m.host.LookPath(ctx, t); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return configError(fmt.Sprintf("volumes need %s on the host, which cannot find %s on its PATH; install e2fsprogs there",
			strings.Join(ext4Tools, ", "), strings.Join(missing, " or ")))
	}
	return nil
}

// makeDataDir creates data_dir private (0700) before any step makes it as the parent of its own
// directory with that directory's mode; an existing data_dir is left as it is.
func (m *Manager) makeDataDir(ctx context.Context) error {
	if err := m.host.MkdirAll(ctx, m.opts.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data_dir %s: %w", m.opts.DataDir, err)
	}
	return nil
}
