package host

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Owner reads the same user and group from either host's Stat, and UID is the user that owns
// what the host makes.
func TestOwnerAndUIDAgreeOnEveryHost(t *testing.T) {
	forEachHost(t, func(t *testing.T, h Host, dir string) {
		ctx := ctxT(t)
		p := filepath.Join(dir, "f")
		if err := h.WriteFile(ctx, p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		fi, err := h.Stat(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		uid, gid, ok := Owner(fi)
		if !ok || uid != st.Uid || gid != st.Gid {
			t.Errorf("Owner = %d:%d (%v), want %d:%d", uid, gid, ok, st.Uid, st.Gid)
		}
		me, err := UID(ctx, h)
		if err != nil || me != st.Uid {
			t.Errorf("UID = %d, %v; want the owner of what it made, %d", me, err, st.Uid)
		}
		if me != uint32(os.Getuid()) {
			t.Errorf("UID = %d, want %d (the test's hosts are this user)", me, os.Getuid())
		}
	})
}
