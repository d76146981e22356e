package instances

import (
	"bytes"
	"context"
	"io"
	"path"
	"strings"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
)

// lastExit describes how the guest's program last ended, from the console.
func (m *Manager) lastExit(ctx context.Context, id string) string {
	console := m.consoleSince(ctx, id, 0)
	i := bytes.LastIndex(console, []byte(system.MarkerExited))
	if i < 0 {
		return "stopped without reporting an exit code"
	}
	code, _, _ := bytes.Cut(console[i+len(system.MarkerExited):], []byte("\n"))
	return "exited with code " + strings.TrimSpace(string(code))
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
	defer f.Close()
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
	b, err := m.host.ReadFile(ctx, path.Join(m.layout.dir(md.ID), vmmLogName(md.Hypervisor)))
	if err != nil || len(b) == 0 {
		return ""
	}
	return "\n" + md.Hypervisor + " output:" + tail(b)
}

// vmmLogName is the VMM's own output file in the instance directory (DESIGN.md §3).
func vmmLogName(hypervisor string) string {
	if hypervisor == "cloud-hypervisor" {
		return "ch-stdout.log"
	}
	return hypervisor + "-stdout.log"
}

// tail keeps the last lines of a console for an error message.
func tail(b []byte) string {
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "\nlast console lines:\n  " + strings.Join(lines, "\n  ")
}
