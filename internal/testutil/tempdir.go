package testutil

import (
	"os"
	"testing"
)

// ShortTempDir is a temporary directory, removed when the test ends, whose path is short enough
// for the unix sockets below it: a socket path holds at most 108 bytes, and t.TempDir's paths
// carry the test's name.
func ShortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
