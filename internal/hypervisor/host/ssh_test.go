package host

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

func dialErr(t *testing.T, cfg SSHConfig) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := DialSSH(ctx, cfg)
	if err == nil {
		_ = s.Close()
	}
	return err
}

func TestHostKeysAreVerified(t *testing.T) {
	d := testutil.StartSSHD(t)
	dir := t.TempDir()
	fingerprint := ssh.FingerprintSHA256(d.HostKey)
	_, otherKey := testutil.NewSSHKey(t, t.TempDir(), "ed25519")
	_, otherType := testutil.NewSSHKey(t, t.TempDir(), "ecdsa")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := SSHConfig{Address: d.URL(), PrivateKeyFile: d.ClientKeyFile, SSHConfigFile: "none", DisableAgent: true}
	with := func(f func(*SSHConfig)) SSHConfig { c := base; f(&c); return c }

	tests := []struct {
		name     string
		cfg      SSHConfig
		sentinel error
		mention  []string
	}{
		{
			name:     "unknown key is refused, showing its fingerprint and how to trust it",
			cfg:      with(func(c *SSHConfig) { c.KnownHostsFile = write("empty_known_hosts", "") }),
			sentinel: ErrHostKeyUnknown,
			mention:  []string{fingerprint, "ssh-keyscan -p " + strconv.Itoa(d.Port) + " 127.0.0.1 >>", "host_key", "[127.0.0.1]:" + strconv.Itoa(d.Port)},
		},
		{
			name:     "a known_hosts file that does not exist yet knows no key",
			cfg:      with(func(c *SSHConfig) { c.KnownHostsFile = filepath.Join(dir, "absent") }),
			sentinel: ErrHostKeyUnknown,
			mention:  []string{fingerprint},
		},
		{
			name: "changed key is refused, showing both fingerprints and how to replace the old one",
			cfg: with(func(c *SSHConfig) {
				c.KnownHostsFile = write("changed", knownhosts.Line([]string{d.Addr()}, otherKey)+"\n")
			}),
			sentinel: ErrHostKeyChanged,
			mention:  []string{fingerprint, ssh.FingerprintSHA256(otherKey), "ssh-keygen -R", "intercepting"},
		},
		{
			name: "a changed key of another type is refused the same way",
			cfg: with(func(c *SSHConfig) {
				c.KnownHostsFile = write("changed-type", knownhosts.Line([]string{d.Addr()}, otherType)+"\n")
			}),
			sentinel: ErrHostKeyChanged,
			mention:  []string{fingerprint, ssh.FingerprintSHA256(otherType), "ssh-keygen -R"},
		},
		{
			name:     "a pinned key that differs is refused",
			cfg:      with(func(c *SSHConfig) { c.HostKey = string(ssh.MarshalAuthorizedKey(otherKey)) }),
			sentinel: ErrHostKeyChanged,
			mention:  []string{fingerprint, ssh.FingerprintSHA256(otherKey)},
		},
		{
			name: "a pinned known_hosts line is accepted",
			cfg:  with(func(c *SSHConfig) { c.HostKey = d.KnownHostsLine() }),
		},
		{
			name: "a pinned \"type base64\" key is accepted",
			cfg:  with(func(c *SSHConfig) { c.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(d.HostKey))) }),
		},
		{
			name: "the key listed in known_hosts is accepted, among other hosts' keys",
			cfg: with(func(c *SSHConfig) {
				c.KnownHostsFile = write("several", knownhosts.Line([]string{"[127.0.0.1]:1"}, otherKey)+"\n"+d.KnownHostsLine()+"\n")
			}),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := dialErr(t, tc.cfg)
			if tc.sentinel == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("got %v, want %v", err, tc.sentinel)
			}
			for _, m := range tc.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("the error does not mention %q:\n%v", m, err)
				}
			}
		})
	}
}

func TestInsecureIgnoreHostKeyConnectsButWarns(t *testing.T) {
	d := testutil.StartSSHD(t)
	var warnings []string
	s := dialFixture(t, d, SSHConfig{
		InsecureIgnoreHostKey: true, KnownHostsFile: filepath.Join(t.TempDir(), "empty"),
		Warn: func(m string) { warnings = append(warnings, m) },
	})
	if _, err := s.Run(ctxT(t), nil, "true"); err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "insecure_ignore_host_key") {
		t.Fatalf("warnings %q, want one about insecure_ignore_host_key", warnings)
	}
}

func TestEveryKeyTypeLogsInFromAFileOrInline(t *testing.T) {
	d := testutil.StartSSHD(t)
	for _, kind := range []string{"ed25519", "ecdsa", "rsa"} {
		file, pub := testutil.NewSSHKey(t, t.TempDir(), kind)
		d.AuthorizeKey(t, pub)
		pem, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for name, cfg := range map[string]SSHConfig{"file": {PrivateKeyFile: file}, "inline": {PrivateKey: string(pem)}} {
			t.Run(kind+"/"+name, func(t *testing.T) {
				s := dialFixture(t, d, cfg)
				out, err := s.Run(ctxT(t), nil, "id", "-un")
				if err != nil || strings.TrimSpace(string(out)) != d.User {
					t.Fatalf("logged in as %q, %v", out, err)
				}
			})
		}
	}
}

// startAgent runs a real ssh-agent holding keyFile and returns its socket.
func startAgent(t *testing.T, keyFile string) string {
	t.Helper()
	agentBin := testutil.RequireTool(t, "ssh-agent")
	addBin := testutil.RequireTool(t, "ssh-add")
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command(agentBin, "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, func() bool { _, err := os.Stat(sock); return err == nil }, "ssh-agent's socket")
	add := exec.Command(addBin, keyFile)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v\n%s", err, out)
	}
	return sock
}

func TestAgentKeysLogIn(t *testing.T) {
	d := testutil.StartSSHD(t)
	keyFile, pub := testutil.NewSSHKey(t, t.TempDir(), "ecdsa")
	d.AuthorizeKey(t, pub)
	sock := startAgent(t, keyFile)
	t.Setenv("HOME", t.TempDir()) // no ~/.ssh/id_*: only the agent can log in
	t.Setenv("SSH_AUTH_SOCK", sock)
	ctx := ctxT(t)
	s, err := DialSSH(ctx, SSHConfig{Address: d.URL(), KnownHostsFile: d.KnownHostsFile, SSHConfigFile: "none"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if _, err := s.Run(ctx, nil, "true"); err != nil {
		t.Fatal(err)
	}
}

func TestAWrongKeyFailsNamingTheMethodsTried(t *testing.T) {
	d := testutil.StartSSHD(t)
	wrongFile, wrongPub := testutil.NewSSHKey(t, t.TempDir(), "ed25519")
	agentFile, agentPub := testutil.NewSSHKey(t, t.TempDir(), "rsa")
	sock := startAgent(t, agentFile)
	err := dialErr(t, SSHConfig{
		Address: d.URL(), PrivateKeyFile: wrongFile, AgentSocket: sock,
		KnownHostsFile: d.KnownHostsFile, SSHConfigFile: "none",
	})
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("got %v, want ErrAuth", err)
	}
	for _, m := range []string{"publickey", wrongFile, ssh.FingerprintSHA256(wrongPub), "ssh-agent", ssh.FingerprintSHA256(agentPub), d.User + "@" + d.Addr()} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("the error does not mention %q:\n%v", m, err)
		}
	}
}

func TestNoKeyAtAllSaysHowToProvideOne(t *testing.T) {
	d := testutil.StartSSHD(t)
	t.Setenv("HOME", t.TempDir()) // no ~/.ssh/id_* to fall back on
	err := dialErr(t, SSHConfig{Address: d.URL(), KnownHostsFile: d.KnownHostsFile, SSHConfigFile: "none", DisableAgent: true})
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "private_key") {
		t.Fatalf("got %v, want ErrAuth saying how to provide a key", err)
	}
}

func TestSSHConfigAliasGivesHostPortUserAndKey(t *testing.T) {
	d := testutil.StartSSHD(t)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config")
	config := fmt.Sprintf(`Host other
  Port 1

Host myvm
  HostName %s
  Port %d
  User %s
  IdentityFile %s
  UserKnownHostsFile %s
`, d.Host, d.Port, d.User, d.ClientKeyFile, d.KnownHostsFile)
	if err := os.WriteFile(cfgFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	s, err := DialSSH(ctx, SSHConfig{Address: "myvm", SSHConfigFile: cfgFile, DisableAgent: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if want := d.User + "@" + d.Addr(); s.String() != want {
		t.Fatalf("connected to %s, want %s", s, want)
	}
	if _, err := s.Run(ctx, nil, "true"); err != nil {
		t.Fatal(err)
	}
	// The URL form finds the same alias.
	s2, err := DialSSH(ctx, SSHConfig{Address: "ssh://myvm", SSHConfigFile: cfgFile, DisableAgent: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = s2.Close()
}

func TestProxyJumpReachesTheHostThroughAnother(t *testing.T) {
	d := testutil.StartSSHD(t)
	cfgFile := filepath.Join(t.TempDir(), "config")
	config := fmt.Sprintf(`Host bastion
  HostName %[1]s
  Port %[2]d
  User %[3]s

Host behind
  HostName %[1]s
  Port %[2]d
  User %[3]s
  ProxyJump bastion
`, d.Host, d.Port, d.User)
	if err := os.WriteFile(cfgFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s := dialFixture(t, d, SSHConfig{Address: "behind", SSHConfigFile: cfgFile})
	if _, err := s.Run(ctxT(t), nil, "true"); err != nil {
		t.Fatal(err)
	}
	if n := s.Handshakes(); n != 2 {
		t.Fatalf("%d handshakes, want 2 (the jump host and the host)", n)
	}
}

func TestOneConnectionIsSharedByEveryUser(t *testing.T) {
	d := testutil.StartSSHD(t)
	a := dialFixture(t, d, SSHConfig{})
	b := dialFixture(t, d, SSHConfig{})
	ctx := ctxT(t)
	for _, s := range []*SSH{a, b} {
		if _, err := s.Stat(ctx, "/"); err != nil {
			t.Fatal(err)
		}
	}
	if a.Handshakes() != 1 || a.c != b.c {
		t.Fatalf("%d handshakes for two users of one host, want 1", a.Handshakes())
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Run(ctx, nil, "true"); err != nil {
		t.Fatalf("the connection closed while another user still has it: %v", err)
	}
}

func TestReconnectsAfterTheServerRestarts(t *testing.T) {
	d := testutil.StartSSHD(t)
	s := dialFixture(t, d, SSHConfig{})
	ctx := ctxT(t)
	dir := t.TempDir()
	if err := s.WriteFile(ctx, filepath.Join(dir, "before"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.Restart(t)
	// A command (not safe to repeat) and a file operation both find a new connection.
	if out, err := s.Run(ctx, nil, "echo", "after"); err != nil || string(out) != "after\n" {
		t.Fatalf("Run after the restart: %q, %v", out, err)
	}
	if b, err := s.ReadFile(ctx, filepath.Join(dir, "before")); err != nil || string(b) != "1" {
		t.Fatalf("ReadFile after the restart: %q, %v", b, err)
	}
	d.Restart(t)
	if _, err := s.Stat(ctx, dir); err != nil {
		t.Fatalf("Stat after the second restart: %v", err)
	}
	if n := s.Handshakes(); n != 3 {
		t.Fatalf("%d handshakes, want 3 (one per server start)", n)
	}
}

func TestACommandCutOffByTheConnectionSaysSo(t *testing.T) {
	d := testutil.StartSSHD(t)
	s := dialFixture(t, d, SSHConfig{})
	ctx := ctxT(t)
	errc := make(chan error, 1)
	go func() { _, err := s.Run(ctx, nil, "sleep", "30"); errc <- err }()
	time.Sleep(500 * time.Millisecond)
	d.Stop(t)
	select {
	case err := <-errc:
		if !errors.Is(err, ErrConnectionLost) {
			t.Fatalf("got %v, want ErrConnectionLost", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after the connection died")
	}
	if _, err := s.Stat(ctx, "/"); err == nil {
		t.Fatal("Stat succeeded with the server down")
	}
	d.Start(t)
	if _, err := s.Stat(ctx, "/"); err != nil {
		t.Fatalf("Stat after the server came back: %v", err)
	}
}

func TestKeepAliveDropsAConnectionThatStopsAnswering(t *testing.T) {
	d := testutil.StartSSHD(t)
	s := dialFixture(t, d, SSHConfig{KeepAlive: 200 * time.Millisecond})
	ctx := ctxT(t)
	if _, err := s.Stat(ctx, "/"); err != nil {
		t.Fatal(err)
	}
	frozen := d.ConnectionPIDs()
	if len(frozen) == 0 {
		t.Fatal("no sshd process serves the connection")
	}
	for _, pid := range frozen {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
	t.Cleanup(func() {
		for _, pid := range frozen {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	gen := s.c.gen
	waitFor(t, gen.dead, "the keepalive to give up on the frozen connection")
	if _, err := s.Stat(ctx, "/"); err != nil {
		t.Fatalf("Stat after the keepalive dropped the connection: %v", err)
	}
	if s.Handshakes() != 2 {
		t.Fatalf("%d handshakes, want 2", s.Handshakes())
	}
}

func TestManyCommandsAndLocksAtOnceStayWithinTheSessionLimit(t *testing.T) {
	d := testutil.StartSSHD(t) // MaxSessions 10
	s := dialFixture(t, d, SSHConfig{})
	ctx := ctxT(t)
	dir := t.TempDir()
	// Twelve locks held at once: more than MaxSessions, as many concurrent flows would hold.
	var unlocks []func()
	for i := range 12 {
		u, err := s.Lock(ctx, filepath.Join(dir, fmt.Sprintf("lock-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		unlocks = append(unlocks, u)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := s.Run(ctx, nil, "sh", "-c", "sleep 0.2; echo $1", "sh", strconv.Itoa(i))
			if err == nil && strings.TrimSpace(string(out)) != strconv.Itoa(i) {
				err = fmt.Errorf("run %d printed %q", i, out)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for _, u := range unlocks {
		u()
	}
}

func TestStartDetachedOutlivesTheConnection(t *testing.T) {
	d := testutil.StartSSHD(t)
	s := dialFixture(t, d, SSHConfig{})
	dir := t.TempDir()
	pid, err := s.StartDetached(ctxT(t), []string{"/bin/sh", "-c", "sleep 300; exit 0", dir}, filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	d.Stop(t) // and every sshd process, as if the host's sshd died
	time.Sleep(300 * time.Millisecond)
	if alive, err := (Local{}).ProcessAlive(context.Background(), pid, dir); err != nil || !alive {
		t.Fatalf("the detached process did not survive the connection: %v, %v", alive, err)
	}
}

func TestLocksAreReleasedWhenTheConnectionDies(t *testing.T) {
	d := testutil.StartSSHD(t)
	s := dialFixture(t, d, SSHConfig{})
	ctx := ctxT(t)
	lockPath := filepath.Join(t.TempDir(), ".lock")
	if _, err := s.Lock(ctx, lockPath); err != nil {
		t.Fatal(err)
	}
	d.Stop(t)
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	unlock, err := Local{}.Lock(lctx, lockPath)
	if err != nil {
		t.Fatalf("the lock of a dead connection is still held: %v", err)
	}
	unlock()
}

func TestParseHostURL(t *testing.T) {
	tests := []struct {
		in      string
		want    HostURL
		wantErr string
	}{
		{in: "", want: HostURL{Kind: KindLocal}},
		{in: "unix://", want: HostURL{Kind: KindLocal}},
		{in: "ssh://root@10.0.0.5:22", want: HostURL{Kind: KindSSH, User: "root", Host: "10.0.0.5", Port: 22}},
		{in: "ssh://10.0.0.5", want: HostURL{Kind: KindSSH, Host: "10.0.0.5"}},
		{in: "ssh://ops@myvm", want: HostURL{Kind: KindSSH, User: "ops", Host: "myvm"}},
		{in: "ssh://[::1]:2222", want: HostURL{Kind: KindSSH, Host: "::1", Port: 2222}},
		{in: "ssh://root@host/", want: HostURL{Kind: KindSSH, User: "root", Host: "host"}},
		{in: "tcp://10.0.0.5", wantErr: `scheme "tcp"`},
		{in: "10.0.0.5", wantErr: "allowed"},
		{in: "unix:///var/run/x.sock", wantErr: "takes no path"},
		{in: "ssh://", wantErr: "names no host"},
		{in: "ssh://root:secret@host", wantErr: "password"},
		{in: "ssh://host:99999", wantErr: "1 to 65535"},
		{in: "ssh://host:0", wantErr: "1 to 65535"},
		{in: "ssh://host/some/path", wantErr: "path"},
		{in: "ssh://@host", wantErr: "empty user name"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseHostURL(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), tc.in) {
					t.Fatalf("ParseHostURL(%q) = %+v, %v; want an error naming the value and %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseHostURL(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestKeySettingsAreCheckedWithoutConnecting(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if err := CheckPrivateKey(string(pem.EncodeToMemory(block))); err != nil {
		t.Errorf("a valid key: %v", err)
	}
	if err := CheckPrivateKey("hunter2"); err == nil || !strings.Contains(err.Error(), "private_key is not a PEM or OpenSSH private key") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a key that is none: %v", err)
	}
	if err := CheckHostKey(pub + "\n\n[10.0.0.5]:22 " + pub + "\n"); err != nil {
		t.Errorf("valid host keys: %v", err)
	}
	if err := CheckHostKey(pub + "\nssh-ed25519"); err == nil || !strings.Contains(err.Error(), `host_key "ssh-ed25519" is neither a known_hosts line`) {
		t.Errorf("a host key that is none: %v", err)
	}
}

func TestShellJoinSurvivesAnyBytes(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	args := []string{"'", "''", `'\''`, "a'b'c", "$x", "\\", "\n", " ", "!", "\x01\x7f\xff"}
	out, err := exec.Command(sh, "-c", shellJoin(append([]string{"printf", `%s\0`}, args...))).Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Join(args, "\x00") + "\x00"; string(out) != want {
		t.Fatalf("sh split the line into\n%q\nwant\n%q", out, want)
	}
}

func TestResolveAppliesTheSSHConfigFileBelowTheAddress(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	cfgFile := filepath.Join(home, "config")
	config := `Host web
  HostName 10.0.0.5
  Port 2222
  User deploy
  IdentityFile ~/.ssh/web_key
  ProxyJump ops@bastion:2200

Host bastion
  HostName 192.0.2.1

Host *
  User fallback
`
	if err := os.WriteFile(cfgFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     SSHConfig
		want    string // user@host:port
		jumps   string
		wantErr string
	}{
		{name: "alias", cfg: SSHConfig{Address: "web"}, want: "deploy@10.0.0.5:2222", jumps: "[ops@192.0.2.1:2200]"},
		{name: "the address's port and user win", cfg: SSHConfig{Address: "ssh://root@web:22"}, want: "root@10.0.0.5:22", jumps: "[ops@192.0.2.1:2200]"},
		{name: "user fills in for the address", cfg: SSHConfig{Address: "web", User: "admin"}, want: "admin@10.0.0.5:2222", jumps: "[ops@192.0.2.1:2200]"},
		{name: "an unknown host gets Host * and port 22", cfg: SSHConfig{Address: "ssh://10.9.9.9"}, want: "fallback@10.9.9.9:22", jumps: "[]"},
		{name: "no config file", cfg: SSHConfig{Address: "web", User: "u", SSHConfigFile: "none"}, want: "u@web:22", jumps: "[]"},
		{name: "two different users", cfg: SSHConfig{Address: "ssh://root@web", User: "admin"}, wantErr: `logs in as "root" but user is "admin"`},
		{name: "too few sessions", cfg: SSHConfig{Address: "web", MaxSessions: 2}, wantErr: "must be 3 or more"},
		{name: "not an SSH address", cfg: SSHConfig{Address: "unix://"}, wantErr: "not an SSH address"},
		{name: "a config file that is not there", cfg: SSHConfig{Address: "web", SSHConfigFile: filepath.Join(home, "absent")}, wantErr: "absent"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg.SSHConfigFile == "" {
				tc.cfg.SSHConfigFile = cfgFile
			}
			got, err := resolve(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tc.want || fmt.Sprint(got.jumps) != tc.jumps {
				t.Fatalf("resolved to %s via %v, want %s via %s", got.endpoint, got.jumps, tc.want, tc.jumps)
			}
		})
	}
	got, err := resolve(SSHConfig{Address: "web", SSHConfigFile: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(home, ".ssh", "web_key"); len(got.identityFiles) != 1 || got.identityFiles[0] != want {
		t.Fatalf("identity files %v, want [%s]", got.identityFiles, want)
	}
}

func TestABrokenDefaultSSHConfigIsSkippedWithAWarning(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".ssh", "config"), []byte("Match exec \"true\"\n  Port 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var warnings []string
	got, err := resolve(SSHConfig{Address: "ssh://u@web", Warn: func(m string) { warnings = append(warnings, m) }})
	if err != nil || got.port != 22 {
		t.Fatalf("resolve: %+v, %v", got, err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], filepath.Join(home, ".ssh", "config")) {
		t.Fatalf("warnings %q, want one naming the file", warnings)
	}
	if _, err := resolve(SSHConfig{Address: "ssh://u@web", SSHConfigFile: filepath.Join(home, ".ssh", "config")}); err == nil {
		t.Fatal("a broken config file that was named explicitly was accepted")
	}
}

func TestLZ4RunsOnTheHostAndReadsBackAsFrames(t *testing.T) {
	testutil.RequireTool(t, "lz4")
	d := testutil.StartSSHD(t)
	s := dialFixture(t, d, SSHConfig{})
	ctx := ctxT(t)
	dir := t.TempDir()
	data := bytes.Repeat([]byte("memory page with some text in it\n"), 50000)
	src := filepath.Join(dir, "memory-ranges")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	handled, err := s.LZ4(ctx, src, src+".lz4", false)
	if !handled || err != nil {
		t.Fatalf("LZ4 compress: handled=%v err=%v", handled, err)
	}
	if fi, err := os.Stat(src + ".lz4"); err != nil || fi.Size() >= int64(len(data)) {
		t.Fatalf("compressed file: %v", err)
	}
	if handled, err := s.LZ4(ctx, src+".lz4", src+".back", true); !handled || err != nil {
		t.Fatalf("LZ4 decompress: handled=%v err=%v", handled, err)
	}
	if back, _ := os.ReadFile(src + ".back"); !bytes.Equal(back, data) {
		t.Fatal("the round trip through the host's lz4 changed the data")
	}
	if handled, err := s.LZ4(ctx, src, src+".back", true); !handled || err == nil {
		t.Fatalf("decompressing a file that is not a frame: handled=%v err=%v", handled, err)
	}
	if _, err := os.Stat(src + ".back"); !os.IsNotExist(err) {
		t.Fatalf("a failed decompression left its output: %v", err)
	}
}

func TestLZ4AsksAgainAfterALookupThatGotNoAnswer(t *testing.T) {
	testutil.RequireTool(t, "lz4")
	d := testutil.StartSSHD(t)
	ctx := ctxT(t)
	src := filepath.Join(t.TempDir(), "memory-ranges")
	if err := os.WriteFile(src, bytes.Repeat([]byte("page\n"), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	compress := func(t *testing.T, s *SSH, ctx context.Context) bool {
		t.Helper()
		handled, err := s.LZ4(ctx, src, src+".lz4", false)
		if handled && err != nil {
			t.Fatalf("LZ4 compress: %v", err)
		}
		return handled
	}

	t.Run("cancelled", func(t *testing.T) {
		// One session for commands: while a command holds it, the lookup waits until its
		// context ends.
		s := dialFixture(t, d, SSHConfig{MaxSessions: 3})
		busyCtx, stopBusy := context.WithCancel(ctx)
		busy := make(chan struct{})
		go func() { defer close(busy); _, _ = s.Run(busyCtx, nil, "sleep", "30") }()
		waitFor(t, func() bool { return len(s.c.execSlots) == cap(s.c.execSlots) }, "the command to hold the only session")
		lctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		if compress(t, s, lctx) {
			t.Fatal("LZ4 ran with no session to look lz4 up in")
		}
		stopBusy()
		<-busy
		if !compress(t, s, ctx) {
			t.Fatal("a lookup cut off by its context is remembered as \"no lz4 on this host\"")
		}
	})

	t.Run("a tool that is not there is an answer", func(t *testing.T) {
		s := dialFixture(t, d, SSHConfig{})
		_, answered, err := s.lookPath(ctx, "no-such-tool-hypeman")
		if !answered || !errors.Is(err, exec.ErrNotFound) {
			t.Fatalf("looking up a missing tool: answered=%v err=%v, want an answer with exec.ErrNotFound", answered, err)
		}
	})

	t.Run("connection lost", func(t *testing.T) {
		s := dialFixture(t, d, SSHConfig{})
		d.Stop(t)
		if compress(t, s, ctx) {
			t.Fatal("LZ4 ran with the server down")
		}
		d.Start(t)
		if !compress(t, s, ctx) {
			t.Fatal("a lookup that lost its connection is remembered as \"no lz4 on this host\"")
		}
	})
}

func TestFreeSpaceThroughDFAgreesWithSFTP(t *testing.T) {
	d := testutil.StartSSHD(t)
	s := dialFixture(t, d, SSHConfig{})
	ctx := ctxT(t)
	dir := filepath.Join(t.TempDir(), "with space")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.MountTmpfs(t, dir, 8*mib)
	if err := os.WriteFile(filepath.Join(dir, "one-mib"), make([]byte, mib), 0o600); err != nil {
		t.Fatal(err)
	}
	sftpFree, err := s.FreeSpace(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if dfFree, err := s.dfAvailable(ctx, dir); err != nil || dfFree != sftpFree || dfFree != 7*mib {
		t.Fatalf("df says %d bytes free (%v), SFTP %d; want both %d", dfFree, err, sftpFree, 7*mib)
	}
	if _, err := s.dfAvailable(ctx, filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("df of a missing path: %v, want ErrNotExist", err)
	}
}

func TestParseDFFindsAvailableBesideSpacesInNames(t *testing.T) {
	for out, want := range map[string]int64{
		"Filesystem 1024-blocks Used Available Capacity Mounted on\ntmpfs 8192 1024 7168 13% /mnt/with space\n": 7168,
		"Filesystem 1024-blocks Used Available Capacity Mounted on\nmy disk 100 0 100 0% /mnt/a 50% b\n":        100,
	} {
		if got, err := parseDF([]byte(out)); err != nil || got != want {
			t.Errorf("parseDF(%q) = %d, %v; want %d", out, got, err, want)
		}
	}
	if _, err := parseDF([]byte("df: nonsense\n")); err == nil {
		t.Error("parseDF accepted a line without a capacity column")
	}
}
