package chstandin

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// CommandLine is what the stand-in binary understands of cloud-hypervisor's command line.
type CommandLine struct {
	// SocketPath is --api-socket path=P (or a bare P); SocketFD is --api-socket fd=N, else -1.
	SocketPath string
	SocketFD   int
	// LogFile is --log-file; empty means standard error.
	LogFile string
	// Verbosity counts -v.
	Verbosity int
	// Version is -V / --version.
	Version bool
	// Seccomp is --seccomp: true (the default), false, log or errno.
	Seccomp string
}

// errNeedsPayload is clap's refusal of a VM option without a payload: --landlock and
// --landlock-rules belong to cloud-hypervisor's vm-config group, which requires one of --kernel,
// --firmware or --igvm (create_app in cloud-hypervisor/src/main.rs). A VMM driven through the API
// enables Landlock with landlock_enable and landlock_rules in vm.create instead.
const errNeedsPayload = "the following required arguments were not provided:\n  <--firmware <firmware>|--kernel <kernel>|--igvm <igvm>>"

// ParseCommandLine reads cloud-hypervisor's arguments (without the program name). VM options such
// as --kernel are refused: the stand-in is driven through the API only.
func ParseCommandLine(args []string) (CommandLine, error) {
	cl := CommandLine{SocketFD: -1, Seccomp: "true"}
	needsPayload := false
	for i := 0; i < len(args); i++ {
		arg := args[i]
		name, value, inline := strings.Cut(arg, "=")
		if !strings.HasPrefix(arg, "--") {
			name, inline = arg, false
		}
		takeValue := func() (string, error) {
			if inline {
				return value, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", name)
			}
			i++
			return args[i], nil
		}
		switch {
		case name == "--api-socket":
			v, err := takeValue()
			if err != nil {
				return cl, err
			}
			if err := cl.apiSocket(v); err != nil {
				return cl, err
			}
		case name == "--log-file":
			v, err := takeValue()
			if err != nil {
				return cl, err
			}
			cl.LogFile = v
		case name == "--seccomp":
			// There is no sandbox to configure; the values are still checked.
			v, err := takeValue()
			if err != nil {
				return cl, err
			}
			if v != "true" && v != "false" && v != "log" && v != "errno" {
				return cl, fmt.Errorf("--seccomp %q is not one of true, false, log, errno", v)
			}
			cl.Seccomp = v
		case name == "--landlock" && !inline:
			needsPayload = true
		case name == "--landlock-rules":
			// One or more values, up to the next option; each is path=<path>,access=[rw].
			if _, err := takeValue(); err != nil {
				return cl, err
			}
			for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
			}
			needsPayload = true
		case name == "-V" || name == "--version":
			cl.Version = true
		case len(name) > 1 && strings.Trim(name, "v") == "-":
			cl.Verbosity += len(name) - 1
		default:
			return cl, fmt.Errorf("the stand-in does not support the argument %q; it takes --api-socket, --log-file, -v, --seccomp and --version", arg)
		}
	}
	if needsPayload {
		return cl, errors.New(errNeedsPayload)
	}
	return cl, nil
}

func (cl *CommandLine) apiSocket(v string) error {
	switch {
	case strings.HasPrefix(v, "path="):
		cl.SocketPath = strings.TrimPrefix(v, "path=")
	case strings.HasPrefix(v, "fd="):
		fd, err := strconv.Atoi(strings.TrimPrefix(v, "fd="))
		if err != nil || fd < 0 {
			return fmt.Errorf("--api-socket %q: fd must be a file descriptor number", v)
		}
		cl.SocketFD = fd
	case strings.Contains(v, "="):
		return fmt.Errorf("--api-socket %q: use path=<socket>, fd=<n> or a bare path", v)
	default:
		cl.SocketPath = v
	}
	if cl.SocketPath == "" && cl.SocketFD < 0 {
		return fmt.Errorf("--api-socket %q names no socket", v)
	}
	return nil
}
