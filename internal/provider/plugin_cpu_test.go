package provider

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pluginCPU: the plan benchmarks measure the CPU time of a provider process apart from
// Terraform's. Terraform starts a wrapper (this test binary, with pluginCPUPluginEnv naming the
// provider binary) which runs the provider as its child on the same stdin, stdout and stderr,
// waits for it, and appends the child's user + system time, in microseconds, to the file
// pluginCPUFileEnv names. The provider process is the one Terraform talks to; only its start and
// end pass through the wrapper.
const (
	pluginCPUPluginEnv = "HYPEMAN_BENCH_PLUGIN"
	pluginCPUFileEnv   = "HYPEMAN_BENCH_PLUGIN_CPU"
)

func TestMain(m *testing.M) {
	if plugin := os.Getenv(pluginCPUPluginEnv); plugin != "" {
		os.Exit(runPluginCounted(plugin, os.Getenv(pluginCPUFileEnv)))
	}
	os.Exit(m.Run())
}

// runPluginCounted runs plugin as the wrapper described above and returns its exit code.
func runPluginCounted(plugin, cpuFile string) int {
	// Terraform's interrupt reaches the provider itself, in the same process group.
	signal.Ignore(os.Interrupt)
	cmd := exec.Command(plugin, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = os.Environ()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "start the provider:", err)
		return 1
	}
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, syscall.SIGTERM)
	go func() {
		for sig := range terms {
			_ = cmd.Process.Signal(sig)
		}
	}()
	err := cmd.Wait()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && cpuFile != "" {
		us := (ru.Utime.Nano() + ru.Stime.Nano()) / 1000
		if f, ferr := os.OpenFile(cpuFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); ferr == nil {
			_, _ = fmt.Fprintf(f, "%d\n", us)
			_ = f.Close()
		}
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if err != nil {
		return 1
	}
	return 0
}

// pluginCPUOf sums the CPU times the wrappers of one terraform command wrote into file.
func pluginCPUOf(tb testing.TB, file string) time.Duration {
	tb.Helper()
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0 // the command started no provider
	}
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var sum time.Duration
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		us, err := strconv.ParseInt(strings.TrimSpace(sc.Text()), 10, 64)
		if err != nil {
			tb.Fatalf("%s: %q: %v", file, sc.Text(), err)
		}
		sum += time.Duration(us) * time.Microsecond
	}
	return sum
}
