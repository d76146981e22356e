package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// VMSlotsEnv sets how many tests may hold a VM at once on this machine, across every test binary
// (`go test -p 2` runs two packages at once); the default is DefaultVMSlots.
const VMSlotsEnv = "HYPEMAN_TEST_VMS"

// DefaultVMSlots is one VM per core of the machines the tests are made for: under TCG a booting
// guest keeps a core busy, and more at once only makes every boot slower.
const DefaultVMSlots = 2

// VMSlot holds one of the machine's VM slots for the rest of the test, waiting for one to be free.
// Every test that boots a VM takes one first, so that tests marked parallel and the packages that
// `go test` runs side by side never boot more guests at once than the machine has slots. A slot is
// an flock on a file in the temporary directory: it is given back when the test ends, and by the
// kernel when the test binary dies.
//
// A test holds at most one slot, which covers its subtests too: two parallel tests that each held
// one and waited for a second would wait for each other forever.
func VMSlot(t testing.TB) {
	t.Helper()
	if holding(t.Name()) {
		return
	}
	n := DefaultVMSlots
	if v := os.Getenv(VMSlotsEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("%s=%q: want a whole number of at least 1", VMSlotsEnv, v)
		}
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("hypeman-test-vm-slots-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("VM slots: %v", err)
	}
	start := time.Now()
	for {
		for i := range n {
			f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(i)), os.O_CREATE|os.O_RDWR, 0o600)
			if err != nil {
				t.Fatalf("VM slots: %v", err)
			}
			if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
				if waited := time.Since(start); waited > time.Second {
					t.Logf("waited %s for a VM slot", waited.Round(time.Second))
				}
				held.Store(t.Name(), struct{}{})
				t.Cleanup(func() {
					held.Delete(t.Name())
					_ = f.Close()
				})
				return
			}
			_ = f.Close()
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// held is the names of this binary's tests that hold a slot.
var held sync.Map

// holding reports whether the test called name, or a test it is a subtest of, holds a slot.
func holding(name string) bool {
	found := false
	held.Range(func(k, _ any) bool {
		h := k.(string)
		found = name == h || strings.HasPrefix(name, h+"/")
		return !found
	})
	return found
}
