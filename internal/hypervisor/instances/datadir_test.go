package instances

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/builtin"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// nobody is the conventional uid and gid of the unprivileged user and group.
const nobody = 65534

// dataDirCases are data_dirs that others can change, each with what the refusal must say, and
// data_dirs that are fine. Making them needs root (chown).
func dataDirCases(t *testing.T) (refused map[string][]string, fine []string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("making directories owned by another user needs root")
	}
	base := testutil.ShortTempDir(t)
	mk := func(name string, perm os.FileMode, uid, gid int) string {
		p := filepath.Join(base, name)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, perm); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	world := mk("world", 0o777, 0, 0)
	group := mk("group", 0o770, 0, nobody)
	foreign := mk("foreign", 0o700, nobody, nobody)
	open := mk("open", 0o777, 0, 0)
	inOpen := mk("open/data", 0o700, 0, 0)
	sticky := mk("sticky", os.ModeSticky|0o777, 0, 0)
	refused = map[string][]string{
		world:                            {"writable by every user", "mode 0777, owner 0:0", "chmod 0700 " + world},
		group:                            {"writable by the members of group 65534", "mode 0770, owner 0:65534", "chmod 0700 " + group},
		foreign:                          {"belongs to user 65534", "not to user 0", "chown root:root " + foreign, "chmod 0700 " + foreign},
		inOpen:                           {"inside " + open, "every user on the host can write (mode 0777, no sticky bit)", "chmod o-w,g-w " + open},
		filepath.Join(open, "not-yet"):   {"inside " + open},
		filepath.Join(sticky, "not-yet"): {"inside " + sticky, "does not exist yet"},
	}
	fine = []string{
		mk("private", 0o700, 0, 0),
		mk("readable", 0o755, 0, 0),
		mk("root-group", 0o770, 0, 0),
		mk("sticky/data", 0o700, 0, 0),
		filepath.Join(base, "not-yet"),
		filepath.Join(base, "private", "not", "yet"),
	}
	return refused, fine
}

func checkDataDirCases(t *testing.T, h host.Host) {
	ctx := testContext(t)
	refused, fine := dataDirCases(t)
	for dir, want := range refused {
		err := CheckDataDir(ctx, h, dir)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), `data_dir "`+dir+`"`) {
			t.Errorf("%s: %v, want ErrInvalidConfig naming data_dir and the value", dir, err)
			continue
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: the error does not say %q: %v", dir, w, err)
			}
		}
	}
	for _, dir := range fine {
		if err := CheckDataDir(ctx, h, dir); err != nil {
			t.Errorf("%s: %v", dir, err)
		}
	}
}

// A data_dir that others can write, that another user owns, or that sits where others can swap
// it out, is refused with what was seen and the fix; private ones are not.
func TestDataDirThatOthersCanChangeIsRefused(t *testing.T) {
	checkDataDirCases(t, host.Local{})
}

// The same over SSH: the owner comes from the sftp attributes and the user from the session.
func TestDataDirThatOthersCanChangeIsRefusedOverSSH(t *testing.T) {
	testutil.SkipShort(t, "starts sshd")
	checkDataDirCases(t, dialSSH(t, testutil.StartSSHD(t)))
}

// A data_dir that does not exist yet is made private by the first create, whatever the steps
// after it make inside it.
func TestCreateMakesTheDataDirPrivate(t *testing.T) {
	dir := filepath.Join(testutil.ShortTempDir(t), "data")
	m, err := New(Options{DataDir: dir, Drivers: builtin.Drivers()})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.makeDataDir(context.Background()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data_dir %v, %v; want mode 0700", fi.Mode(), err)
	}
	if err := CheckDataDir(context.Background(), host.Local{}, dir); err != nil {
		t.Errorf("the data_dir the manager made is refused: %v", err)
	}
}
