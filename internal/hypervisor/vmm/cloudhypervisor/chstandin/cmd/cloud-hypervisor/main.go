// Command cloud-hypervisor is the Cloud Hypervisor stand-in as a binary with the real command
// line, for tests that start VMM processes. HYPEMAN_STANDIN_MODE (v52, v53, head) selects the
// release it behaves like and HYPEMAN_STANDIN_FAULTS the faults it injects; requests that depart
// from the API spec are reported on its log with chstandin.ViolationLogPrefix.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/cloudhypervisor/chstandin"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	// CH runs with umask 077: its socket and snapshot files are private.
	syscall.Umask(0o077)
	cl, err := chstandin.ParseCommandLine(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 2
	}
	mode, err := chstandin.ParseMode(os.Getenv(chstandin.ModeEnv))
	if err != nil {
		return fail(err.Error())
	}
	if cl.Version {
		fmt.Println(mode.VersionLine())
		return 0
	}
	faults, err := chstandin.ParseFaults(os.Getenv(chstandin.FaultsEnv))
	if err != nil {
		return fail(err.Error())
	}
	var log io.Writer = os.Stderr
	if cl.LogFile != "" {
		f, err := os.Create(cl.LogFile)
		if err != nil {
			return fail("open the log file", err.Error())
		}
		defer func() { _ = f.Close() }()
		log = f
	}
	srv, err := chstandin.New(chstandin.Options{Mode: mode, Faults: faults, Log: log, Verbose: cl.Verbosity, Stdout: os.Stdout})
	if err != nil {
		return fail(err.Error())
	}
	// Handle SIGTERM from the start: a client may send it as soon as the socket exists.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		srv.Terminate()
	}()
	time.Sleep(faults.StartDelay)
	var l net.Listener
	switch {
	case cl.SocketFD >= 0:
		l, err = chstandin.ListenFD(cl.SocketFD)
	case cl.SocketPath != "":
		l, err = chstandin.Listen(cl.SocketPath, mode)
	default:
		err = fmt.Errorf("the stand-in is driven through its API: give --api-socket")
	}
	if err != nil {
		return fail("Error starting the HTTP API server", err.Error())
	}
	if err := srv.Serve(l); err != nil {
		return fail(err.Error())
	}
	if srv.Crashed() {
		// A crash leaves the socket file behind and no exit status of its own.
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	return srv.ExitCode()
}

// fail prints an error chain the way CH does before exiting 1.
func fail(chain ...string) int {
	fmt.Fprintln(os.Stderr, "Error: Cloud Hypervisor exited with the following chain of errors:")
	for i, msg := range chain {
		fmt.Fprintf(os.Stderr, "  %d: %s\n", i, msg)
	}
	return 1
}
