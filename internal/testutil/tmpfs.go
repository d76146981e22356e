package testutil

import (
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// MountTmpfs mounts a tmpfs of size bytes on dir, an existing directory, and unmounts it when the
// test ends: a filesystem small enough for a test to fill. Mounting needs root, which the tests
// have here and in CI; elsewhere the test is skipped.
func MountTmpfs(t testing.TB, dir string, size int64) {
	t.Helper()
	err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size="+strconv.FormatInt(size, 10))
	Require(t, err == nil, "cannot mount a tmpfs on "+dir+" (needs root): "+errString(err))
	// Detached: a VMM that the test's other cleanups have not stopped yet may still hold files.
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
