package instances

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// secretLog collects every line the manager logs.
type secretLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *secretLog) log(_ context.Context, msg string, f map[string]any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, "%s %v\n", msg, f)
}

func (l *secretLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// An env value reaches the program and nothing else a user or another host user can read: not
// the manager's log (which the provider writes to tflog), not an error of any flow that fails,
// not the console log or the VMM's output, not a process's command line. The files that must hold
// it (metadata.json and the config disk) are out of other users' reach.
func TestEnvValuesNeverLeak(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	var logs secretLog
	m := env.manager(t, func(o *Options) { o.Log = logs.log })
	ctx := testContext(t)
	token := make([]byte, 12)
	_, _ = rand.Read(token)
	secret := "hm-secret-" + hex.EncodeToString(token)
	var errs []string
	fail := func(what string, err error) {
		if err == nil {
			t.Errorf("%s succeeded, want it to fail", what)
			return
		}
		errs = append(errs, what+": "+err.Error())
	}

	// A program that runs, then a change of env that restarts it in place.
	spec := env.spec("secret-ok")
	spec.Entrypoint = []string{"/bin/sh", "-c", "echo started; sleep 600"}
	spec.Env = map[string]string{"API_TOKEN": secret, "DB_URL": "postgres://u:" + secret + "@db/x"}
	inst, err := m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	for _, p := range testutil.Processes() {
		if strings.Contains(p.String(), secret) {
			t.Errorf("the command line of pid %d holds the env value: %s", p.PID, p)
		}
	}
	spec.Env["API_TOKEN"] = secret + "-rotated"
	if inst, err = m.Update(ctx, inst.ID, spec); err != nil {
		t.Fatalf("Update: %v", err)
	}

	// Flows that fail, each with the secret in its env.
	exits := env.spec("secret-exit")
	exits.Entrypoint = []string{"/bin/sh", "-c", "exit 3"}
	exits.Env = map[string]string{"API_TOKEN": secret}
	_, err = m.Create(ctx, exits, Running)
	fail("a program that exits at once", err)
	missing := env.spec("secret-missing")
	missing.Entrypoint = []string{"/no/such/program"}
	missing.Env = map[string]string{"API_TOKEN": secret}
	_, err = m.Create(ctx, missing, Running)
	fail("an entrypoint that does not exist", err)
	bad := env.spec("secret-nul")
	bad.Env = map[string]string{"API_TOKEN": secret + "\x00"}
	_, err = m.Create(ctx, bad, Running)
	fail("an env value with a NUL byte", err)
	taken := env.spec("secret-ok")
	taken.Env = map[string]string{"API_TOKEN": secret}
	_, err = m.Create(ctx, taken, Running)
	fail("a name that is taken", err)

	for _, e := range errs {
		if strings.Contains(e, secret) {
			t.Errorf("an error shows the env value: %s", e)
		}
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the manager's log shows the env value:\n%s", logs.String())
	}
	checkSecretFiles(t, m.DataDir(), secret)
	if err := m.Delete(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
}

// checkSecretFiles walks the data directory: only metadata.json and the config disk may hold the
// secret, and each of those must be out of reach of other users (no read bit for them, or a
// directory above it they cannot enter).
func checkSecretFiles(t *testing.T, dataDir, secret string) {
	t.Helper()
	holders := 0
	err := filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(data), secret) {
			return err
		}
		switch filepath.Base(p) {
		case "metadata.json", "config.erofs":
			holders++
		default:
			t.Errorf("%s holds the env value", p)
		}
		if reach := othersCanRead(dataDir, p); reach != "" {
			t.Errorf("%s holds the env value and other users can read it: %s", p, reach)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if holders == 0 {
		t.Error("no file holds the env value: the check above looks at nothing")
	}
}

// othersCanRead says how a user other than the owner and group could read p, or "".
func othersCanRead(root, p string) string {
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm()&0o004 == 0 {
		return ""
	}
	for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
		di, err := os.Stat(dir)
		if err == nil && di.Mode().Perm()&0o001 == 0 {
			return "" // others cannot enter dir
		}
		if dir == "/" || dir == filepath.Dir(root) {
			break
		}
	}
	return fmt.Sprintf("mode %04o and every directory above it enterable", fi.Mode().Perm())
}
