package qemu

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// QEMU runs confined (docs/adr/0010-vmm-least-privilege.md):
//
//	sandbox   QEMU's seccomp filter, always: no obsolete system calls, no setuid and the like, no
//	          fork or exec (a process of its own is killed by SIGSYS), no scheduler or resource
//	          changes. Snapshots therefore never use exec: migration; the stream passes a unix
//	          socket in the instance directory instead (relay.go).
//	user      QEMU starts as the VMM user (vmm.UserRunner), never as root then -runas: everything
//	          it opens is handed to that user before it starts (grant).

// sandboxArgs turn QEMU's seccomp sandbox on with every optional restriction.
var sandboxArgs = []string{"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"}

var _ vmm.UserRunner = (*Driver)(nil)

// RunAs makes the driver start QEMU as user, a user of the host ("" or "root": as the user the
// host runs commands as).
func (d *Driver) RunAs(user string) {
	if user == "root" {
		user = ""
	}
	d.user = user
}

// identity is the host user QEMU runs as; the zero value is the host's own user.
type identity struct {
	name     string
	uid, gid int
}

func (id identity) switches() bool { return id.name != "" }

// setpriv is the command that starts argv as id, with the user's groups (kvm, for /dev/kvm) and
// no way back to more privilege. It execs, so the pid it is started with becomes argv's.
func (id identity) setpriv(groups bool) []string {
	if !id.switches() {
		return nil
	}
	g := "--clear-groups"
	if groups {
		g = "--init-groups"
	}
	return []string{"setpriv", "--reuid=" + strconv.Itoa(id.uid), "--regid=" + strconv.Itoa(id.gid), g,
		"--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"}
}

// Devices QEMU opens, which the VMM user must be able to.
const (
	tunDevice = "/dev/net/tun"
	kvmDevice = "/dev/kvm"
)

// ErrNoVMMUser means the host has no user of the name the driver was told to run QEMU as.
var ErrNoVMMUser = errors.New("the VMM user does not exist on the host")

// grantScript makes what QEMU opens private and, when $1 names a user, that user's. Its other
// arguments are pairs: a kind and a path. dir: a private directory (0700); file: a private file
// (0600), made empty when missing (neither may be a symbolic link: a VMM must never be handed, or
// make root change, another file); search: a directory the user must pass through (o+x); reach:
// a directory the user must then be able to enter and write, checked as that user; device: a
// device QEMU opens (/dev/net/tun, /dev/kvm), checked as that user with its groups; shared: a
// read-only disk outside the instance, left as it is when the user can read it (an image in its
// world-readable cache), else taken as a private file in a private directory (a volume). It
// prints the user's uid and gid.
const grantScript = `u=$1; shift
uid= gid=
if [ -n "$u" ]; then
	uid=$(id -u -- "$u" 2>/dev/null) && gid=$(id -g -- "$u" 2>/dev/null) || { echo "no such user: $u" >&2; exit 3; }
fi
while [ $# -ge 2 ]; do
	kind=$1 p=$2; shift 2
	case $kind in dir|file) if [ -L "$p" ]; then echo "$p is a symbolic link" >&2; exit 1; fi ;; esac
	case $kind in
	dir) chmod 0700 -- "$p" || exit 1 ;;
	file) { [ -e "$p" ] || (umask 077 && : >>"$p"); } && chmod 0600 -- "$p" || exit 1 ;;
	search) [ -z "$u" ] || chmod o+x -- "$p" || exit 1; continue ;;
	shared) [ -z "$u" ] && continue
		setpriv --reuid="$uid" --regid="$gid" --clear-groups -- test -r "$p" && continue
		d=${p%/*}; set -- search "${d%/*/*}" search "${d%/*}" dir "$d" file "$p" "$@"; continue ;;
	device) [ -z "$u" ] || setpriv --reuid="$uid" --regid="$gid" --init-groups -- test -r "$p" -a -w "$p" ||
		{ echo "closed device: $p" >&2; exit 5; }; continue ;;
	reach) [ -z "$u" ] || setpriv --reuid="$uid" --regid="$gid" --clear-groups -- test -x "$p" -a -w "$p" ||
		{ echo "cannot reach: $p" >&2; exit 4; }; continue ;;
	esac
	[ -z "$u" ] || chown -- "$uid:$gid" "$p" || exit 1
done
echo "$uid $gid"
`

// grant prepares cfg's files for a QEMU run by user ("": the host's own user), and returns who
// QEMU runs as. Run before every start, it also brings instances made before QEMU ran as a user
// (root's, group-readable) to today's owner and modes.
func grant(ctx context.Context, h host.Host, cfg vmm.Config, user string) (identity, error) {
	args := append([]string{"sh", "-c", grantScript, "qemu-grant", user}, grantArgs(cfg)...)
	out, err := h.Run(ctx, nil, args...)
	return grantResult(out, err, cfg, user)
}

// grantResult is who grantScript, run for cfg, says QEMU runs as, or why it cannot.
func grantResult(out []byte, err error, cfg vmm.Config, user string) (identity, error) {
	if err != nil {
		if strings.Contains(err.Error(), "no such user: ") {
			return identity{}, fmt.Errorf("%w: QEMU is to run as %q, which the host does not know; create the user "+
				"(useradd --system --user-group --no-create-home --shell /usr/sbin/nologin --groups kvm %s, as scripts/install-deps.sh does), "+
				"or set vmm_user = \"root\" to run QEMU as root", ErrNoVMMUser, user, user)
		}
		if _, dev, ok := strings.Cut(err.Error(), "closed device: "); ok {
			dev, _, _ = strings.Cut(dev, "\n")
			return identity{}, fmt.Errorf("the VMM user %q cannot open %s, which QEMU needs; where udev manages /dev, %s is %s "+
				"(scripts/install-deps.sh sets that where it is not), else set vmm_user = \"root\" to run QEMU as root", user, dev, tunDevice, "0666 and /dev/kvm root:kvm 0660 with the user in the kvm group")
		}
		if strings.Contains(err.Error(), "cannot reach: ") {
			return identity{}, fmt.Errorf("the VMM user %q cannot reach %s: a directory above it is closed to that user; "+
				"let it pass (chmod o+x), choose a data_dir it can reach, or set vmm_user = \"root\" to run QEMU as root: %w", user, cfg.Dir, err)
		}
		return identity{}, fmt.Errorf("hand the instance's files to the VMM user %q: %w", user, err)
	}
	if user == "" {
		return identity{}, nil
	}
	id := identity{name: user}
	if _, err := fmt.Sscan(string(out), &id.uid, &id.gid); err != nil {
		return identity{}, fmt.Errorf("the id of the VMM user %q: the host printed %q", user, out)
	}
	return id, nil
}

// grantArgs are grantScript's pairs for cfg: the instance directory, the console's, a writable
// disk's outside it (a volume's), each made private and the user's, with the directories above
// them passable; the console log, the disks in private directories and the RAM file.
func grantArgs(cfg vmm.Config) []string {
	if cfg.Dir == "" {
		return nil
	}
	var args []string
	add := func(kind, p string) { args = append(args, kind, p) }
	inDir := func(p string) bool { return strings.HasPrefix(p, cfg.Dir+"/") }
	private := []string{cfg.Dir}
	if d := path.Dir(cfg.ConsoleLog); inDir(d) {
		private = append(private, d)
	}
	for _, d := range cfg.Disks {
		// A writable disk outside the instance (a volume) lives in a private dir of its own.
		if !d.ReadOnly && !inDir(d.Path) {
			private = append(private, path.Dir(d.Path))
		}
	}
	for _, d := range private {
		if !inDir(d) {
			add("search", path.Dir(path.Dir(d)))
			add("search", path.Dir(d))
		}
		add("dir", d)
	}
	add("file", cfg.ConsoleLog)
	for _, d := range cfg.Disks {
		switch {
		case !d.ReadOnly || inDir(d.Path):
			add("file", d.Path)
		default:
			add("shared", d.Path)
		}
	}
	if cfg.RAMFile != "" {
		add("file", cfg.RAMFile)
	}
	for _, d := range private {
		add("reach", d)
	}
	if cfg.Net != nil {
		add("device", tunDevice)
	}
	if cfg.Accelerator == "kvm" {
		add("device", kvmDevice)
	}
	return args
}

// lookupUser is who QEMU runs as, for work outside an instance directory: the relay, the KVM probe.
func lookupUser(ctx context.Context, h host.Host, user string) (identity, error) {
	return grant(ctx, h, vmm.Config{}, user)
}

// grantKernel lets user pass to the probe's kernel in the system cache (the data directory and
// its system/), as a boot later would, so that the probe finds out about KVM and not about modes.
func grantKernel(ctx context.Context, h host.Host, kernel, user string) (identity, error) {
	if user == "" {
		return identity{}, nil
	}
	dir := path.Dir(kernel)
	args := []string{"sh", "-c", grantScript, "qemu-grant", user, "search", path.Dir(dir), "search", dir}
	out, err := h.Run(ctx, nil, args...)
	return grantResult(out, err, vmm.Config{Dir: dir}, user)
}
