//go:build cpuprofile

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
)

// Built with -tags cpuprofile (the plan benchmarks do so when asked for a profile), the provider
// writes a CPU profile of each of its runs into the directory HYPEMAN_CPUPROFILE_DIR names.
func init() {
	dir := os.Getenv("HYPEMAN_CPUPROFILE_DIR")
	if dir == "" {
		return
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("plugin-%d.pprof", os.Getpid())))
	if err != nil {
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return
	}
	afterServe = func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}
