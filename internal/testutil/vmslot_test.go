package testutil

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// Two slots: two tests hold one each at once, a third waits until one of them ends.
func TestVMSlotWaitsWhileEverySlotIsHeld(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	t.Setenv(VMSlotsEnv, "2")
	held, release := make(chan struct{}, 2), make(chan struct{})
	var wg sync.WaitGroup
	for _, name := range []string{"first", "second"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(name, func(t *testing.T) {
				VMSlot(t)
				held <- struct{}{}
				<-release
			})
		}()
	}
	<-held
	<-held
	const holdFor = 700 * time.Millisecond
	t.Run("third", func(t *testing.T) {
		start := time.Now()
		time.AfterFunc(holdFor, func() { close(release) })
		VMSlot(t)
		if waited := time.Since(start); waited < holdFor {
			t.Errorf("the third test got a slot after %s, while both were held for %s", waited, holdFor)
		}
	})
	wg.Wait()
}

// fatalTB records the first Fatalf and stops the caller there, as testing.T would.
type fatalTB struct {
	testing.TB
	msg string
}

type stopped struct{}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(stopped{})
}

func TestVMSlotsMustBeAWholeNumber(t *testing.T) {
	t.Setenv(VMSlotsEnv, "two")
	f := &fatalTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil && r != (stopped{}) {
				panic(r)
			}
		}()
		VMSlot(f)
	}()
	if want := `HYPEMAN_TEST_VMS="two": want a whole number of at least 1`; f.msg != want {
		t.Errorf("error %q, want %q", f.msg, want)
	}
}

// One slot: a test and its subtests share it, where a second wait would never end.
func TestVMSlotCoversTheTestsSubtests(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	t.Setenv(VMSlotsEnv, "1")
	VMSlot(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.Run("sub", func(t *testing.T) { VMSlot(t) })
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a subtest waited for a second slot while its test held the only one")
	}
}
