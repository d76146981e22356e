package instances

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/logtail"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
)

// consoleTailBytes is how much of the console's end is read to tell how the last boot ended:
// after the exit marker come only the init's and the kernel's last few lines.
const consoleTailBytes = 16 << 10

// What the guest kernel prints as it ends; the init's own markers are in system/contract.go.
const (
	kernelPowerOff = "reboot: Power down"
	kernelPanic    = "Kernel panic - not syncing"
)

// bootEnd is how an instance's last boot ended when no one asked it to: the program's exit code
// when it reported one, and the reason in words for state_reason.
type bootEnd struct {
	ExitCode *int   `json:"exit_code,omitempty"`
	Reason   string `json:"reason"`
}

// readBootEnd reads how the last boot ended from the end of the console. The time is the
// console's last write: the guest's last words, a moment before its VMM went.
func (m *Manager) readBootEnd(ctx context.Context, id string) bootEnd {
	fi, err := m.host.Stat(ctx, m.layout.console(id))
	if err != nil {
		return bootEnd{Reason: "the VMM process ended; the console log cannot be read to tell why: " + err.Error()}
	}
	tail := m.consoleSince(ctx, id, max(0, fi.Size()-consoleTailBytes))
	return endOf(tail, fi.ModTime().UTC().Format(time.RFC3339))
}

// endOf tells how a boot ended from the end of its console, at the time given.
func endOf(console []byte, at string) bootEnd {
	// What comes before the last start marker belongs to earlier boots.
	if i := bytes.LastIndex(console, []byte(system.MarkerStarted)); i >= 0 {
		console = console[i:]
	}
	if line, ok := lineAfter(console, system.MarkerExited); ok {
		if code, err := strconv.Atoi(line); err == nil {
			return bootEnd{ExitCode: &code, Reason: fmt.Sprintf("program exited with code %d at %s", code, at)}
		}
	}
	if line, ok := lineAfter(console, kernelPanic); ok {
		return bootEnd{Reason: fmt.Sprintf("guest kernel panicked at %s (not syncing%s) without its program reporting an exit", at, line)}
	}
	if bytes.Contains(console, []byte(kernelPowerOff)) {
		return bootEnd{Reason: fmt.Sprintf("guest powered off at %s without its program reporting an exit", at)}
	}
	return bootEnd{Reason: fmt.Sprintf("the VMM process ended without the guest reporting an exit (the guest's last console output was at %s)", at)}
}

// lineAfter is the rest of the line after the last occurrence of marker, trimmed.
func lineAfter(console []byte, marker string) (string, bool) {
	i := bytes.LastIndex(console, []byte(marker))
	if i < 0 {
		return "", false
	}
	line, _, _ := bytes.Cut(console[i+len(marker):], []byte("\n"))
	return strings.TrimSpace(string(line)), true
}

func (m *Manager) consoleSize(ctx context.Context, id string) int64 {
	if fi, err := m.host.Stat(ctx, m.layout.console(id)); err == nil {
		return fi.Size()
	}
	return 0
}

// consoleSince reads the console from offset on. The console keeps the history of every boot, so
// the boot wait, which polls it, seeks past what it has already seen instead of reading it all.
func (m *Manager) consoleSince(ctx context.Context, id string, offset int64) []byte {
	f, err := m.host.Open(ctx, m.layout.console(id))
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	if s, ok := f.(io.Seeker); ok {
		if _, err := s.Seek(offset, io.SeekStart); err != nil {
			return nil
		}
	} else if n, err := io.CopyN(io.Discard, f, offset); err != nil || n < offset {
		return nil
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil
	}
	return b
}

func (m *Manager) consoleTail(ctx context.Context, id string, offset int64) string {
	return tail(m.consoleSince(ctx, id, offset))
}

func (m *Manager) vmmOutputTail(ctx context.Context, md *metadata) string {
	drv, err := m.driver(md.Hypervisor)
	if err != nil {
		return ""
	}
	b, err := m.host.ReadFile(ctx, path.Join(m.layout.dir(md.ID), drv.LogName()))
	if err != nil || len(b) == 0 {
		return ""
	}
	return "\n" + md.Hypervisor + " output:" + tail(b)
}

// tail keeps the last lines of a console for an error message.
func tail(b []byte) string {
	lines, _ := logtail.Lines(string(b), 15)
	if len(lines) == 0 {
		return ""
	}
	return "\nlast console lines:\n  " + strings.Join(lines, "\n  ")
}
