package qemu

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestScratchReplug(t *testing.T) {
	cfg := guestConfig(t, 0, 0)
	cfg.VCPUs, cfg.MaxVCPUs = 1, 3
	ctx := testContext(t)
	pid := boot(t, cfg)
	vm := connect(t, cfg)
	waitCount(t, cfg, 1)
	for i, n := range []int{2, 1, 2, 1, 3} {
		if err := vm.SetVCPUs(ctx, n); err != nil {
			b, _ := os.ReadFile(filepath.Join(cfg.Dir, logName))
			t.Fatalf("step %d (%d): %v\n%s", i, n, err, b)
		}
		time.Sleep(2 * time.Second)
		t.Logf("step %d: online %s", i, onlineCPUs(t, cfg))
	}
	quit(t, vm, cfg, pid)
}
