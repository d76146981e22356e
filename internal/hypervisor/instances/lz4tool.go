package instances

import (
	"context"
)

// lz4Tool is the host's lz4 program, which streams a snapshot's memory image through compression
// on its way to disk and through decompression on its way back (scripts/install-deps.sh installs
// it). "" when the host has none: the manager then compresses after the snapshot and decompresses
// before the restore, which is slower and needs room for the raw image beside the compressed one,
// and says so in its log. It is looked up each time, so that installing lz4 takes effect at once.
func (m *Manager) lz4Tool(ctx context.Context, id string) string {
	p, err := m.host.LookPath(ctx, "lz4")
	if err != nil {
		m.log(ctx, "lz4 not found on the host: snapshots are compressed after they are written and decompressed before they are restored, "+
			"which is slower and needs room for both copies; install lz4 (Debian: apt-get install lz4)", map[string]any{"id": id, "error": err.Error()})
		return ""
	}
	return p
}
