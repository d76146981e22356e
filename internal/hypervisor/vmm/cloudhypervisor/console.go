package cloudhypervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// Cloud Hypervisor truncates a serial file in File mode whenever it creates the serial device: at
// vm.create, at a reboot (a guest panic included) and at vm.restore. The console log must only
// ever grow, across standby and restore too, so the VMM writes to a serial file of its own and a
// relay appends that file to the console log as it grows:
//
//	guest ttyS0 → cloud-hypervisor → {Dir}/ch-serial.log (truncated by CH at will)
//	            → tail -F --pid=<VMM> (started detached, stdout opened O_APPEND) → ConsoleLog
//
// tail follows the file across truncations, and after the VMM exits it copies what is left and
// exits too, so no relay outlives its VMM. The host needs GNU tail (coreutils) for --pid.

const (
	serialName   = "ch-serial.log"
	relayPidName = "ch-console-relay.pid"
	// relayScript is run as: sh -c relayScript ch-console-relay VMM_PID SERIAL_FILE VMM_LOG.
	// tail's own complaints go to the VMM's output rather than into the guest console.
	relayScript = `exec tail -q -c +1 -F -s 0.1 --pid="$1" "$2" 2>>"$3"`
	// relayGrace bounds the wait for a relay to copy the last bytes after its VMM exited.
	relayGrace = 3 * time.Second
)

// SerialPath is the file the VMM writes the guest's serial console to; see ConsoleLog for all of it.
func SerialPath(cfg vmm.Config) string { return filepath.Join(cfg.Dir, serialName) }

func relayPidPath(cfg vmm.Config) string { return filepath.Join(cfg.Dir, relayPidName) }

// startRelay starts the relay that appends the serial file of the VMM vmmPid to the console log.
func startRelay(ctx context.Context, h host.Host, cfg vmm.Config, vmmPid int) error {
	argv := []string{"sh", "-c", relayScript, "ch-console-relay", strconv.Itoa(vmmPid), SerialPath(cfg), logPath(cfg)}
	pid, err := h.StartDetached(ctx, argv, cfg.ConsoleLog)
	if err != nil {
		return fmt.Errorf("start the console relay: %w", err)
	}
	if err := h.WriteFile(ctx, relayPidPath(cfg), []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		_ = h.Signal(ctx, pid, syscall.SIGKILL)
		return fmt.Errorf("record the console relay: %w", err)
	}
	return nil
}

// waitRelay waits for the relay of a VMM that has exited to copy the rest and exit; one that does
// not within relayGrace is killed.
func waitRelay(ctx context.Context, h host.Host, cfg vmm.Config) error {
	data, err := h.ReadFile(ctx, relayPidPath(cfg))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("console relay: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return fmt.Errorf("console relay pid file %s holds %q", relayPidPath(cfg), data)
	}
	graceCtx, cancel := context.WithTimeout(ctx, relayGrace)
	defer cancel()
	// The serial file's path tells the relay from a process that reuses its pid.
	if err := poll.Until(graceCtx, pollInterval, poll.IgnoreErrors(host.Exited(h, pid, SerialPath(cfg)))); err != nil {
		_ = h.Signal(ctx, pid, syscall.SIGKILL)
		return fmt.Errorf("the console relay (pid %d) did not finish within %v after its VMM exited", pid, relayGrace)
	}
	if err := h.Remove(ctx, relayPidPath(cfg)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("console relay: %w", err)
	}
	return nil
}
