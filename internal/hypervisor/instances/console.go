package instances

import (
	"bytes"
	"context"
	"io"
	"path"
	"strings"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/logtail"
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
