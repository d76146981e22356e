package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// FailingLZ4 writes an executable named lz4 into a new directory and returns that directory, to
// put first on PATH. It takes the real lz4's arguments and fails part-way, as a compressor killed
// or out of room would: compressing, it compresses the first after bytes of its input and exits
// 1; decompressing, it writes the first after bytes of the real output and exits 1.
func FailingLZ4(t testing.TB, after int64) string {
	t.Helper()
	real := RequireTool(t, "lz4")
	dir := t.TempDir()
	script := fmt.Sprintf(`#!/bin/sh
# A compressor that fails part-way through.
case " $* " in
*" -d "*) '%[1]s' "$@" | head -c %[2]d; exit 1 ;;
esac
head -c %[2]d | '%[1]s' -1 -q -c
exit 1
`, real, after)
	if err := os.WriteFile(filepath.Join(dir, "lz4"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
