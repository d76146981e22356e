package host

import (
	"context"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"syscall"

	"github.com/pkg/sftp"
)

// Owner is the user and group that own the file fi describes, as either Host's Stat reports
// them: locally fi.Sys() is a *syscall.Stat_t, over SSH the sftp client's *sftp.FileStat. ok is
// false when fi carries neither.
func Owner(fi fs.FileInfo) (uid, gid uint32, ok bool) {
	switch st := fi.Sys().(type) {
	case *syscall.Stat_t:
		return st.Uid, st.Gid, true
	case *sftp.FileStat:
		return st.UID, st.GID, true
	}
	return 0, 0, false
}

// UID is the user id that h's commands and files are made as: this process's user locally, the
// SSH user's on the remote host.
func UID(ctx context.Context, h Host) (uint32, error) {
	out, err := h.Run(ctx, nil, "id", "-u")
	if err != nil {
		return 0, fmt.Errorf("read the host user's id: %w", err)
	}
	uid, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("id -u printed %q, not a user id", strings.TrimSpace(string(out)))
	}
	return uint32(uid), nil
}
