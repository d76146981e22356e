package testutil

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHD is a throwaway OpenSSH server on 127.0.0.1 with its own host key and key-only login,
// serving the user the tests run as.
type SSHD struct {
	Host string // 127.0.0.1
	Port int
	User string
	Dir  string // config, keys and logs

	// ClientKey is an ed25519 private key (OpenSSH PEM) the server accepts, also in ClientKeyFile.
	ClientKey     []byte
	ClientKeyFile string
	// HostKey is the server's host key; KnownHostsFile lists it for [127.0.0.1]:Port.
	HostKey        ssh.PublicKey
	KnownHostsFile string

	config string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartSSHD starts /usr/sbin/sshd -D -e -f CONFIG and waits until it accepts connections; it is
// stopped, with every connection it serves, when the test ends. It skips under -short.
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	SkipShort(t, "a real sshd")
	bin := "/usr/sbin/sshd"
	_, err := os.Stat(bin)
	Require(t, err == nil, "sshd is not installed (openssh-server)")
	Require(t, os.Geteuid() == 0, "the sshd fixture needs root: sshd logs users in")
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("sshd needs /run/sshd: %v", err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	d := &SSHD{Host: "127.0.0.1", User: u.Username, Dir: t.TempDir()}
	d.Port = freePort(t)

	hostPriv := writeKey(t, filepath.Join(d.Dir, "ssh_host_ed25519_key"))
	d.HostKey = hostPriv.PublicKey()
	clientPriv := writeKey(t, filepath.Join(d.Dir, "client_ed25519"))
	d.ClientKeyFile = filepath.Join(d.Dir, "client_ed25519")
	if d.ClientKey, err = os.ReadFile(d.ClientKeyFile); err != nil {
		t.Fatal(err)
	}
	d.AuthorizeKey(t, clientPriv.PublicKey())
	d.KnownHostsFile = filepath.Join(d.Dir, "known_hosts")
	if err := os.WriteFile(d.KnownHostsFile, []byte(d.KnownHostsLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	d.config = filepath.Join(d.Dir, "sshd_config")
	config := fmt.Sprintf(`ListenAddress %s:%d
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
MaxSessions 10
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
UseDNS no
PrintMotd no
PrintLastLog no
LogLevel VERBOSE
`, d.Host, d.Port, filepath.Join(d.Dir, "ssh_host_ed25519_key"), filepath.Join(d.Dir, "sshd.pid"), filepath.Join(d.Dir, "authorized_keys"))
	if err := os.WriteFile(d.config, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Start(t)
	t.Cleanup(func() { d.Stop(t) })
	return d
}

// Addr is "127.0.0.1:port".
func (d *SSHD) Addr() string { return net.JoinHostPort(d.Host, strconv.Itoa(d.Port)) }

// URL is "ssh://user@127.0.0.1:port".
func (d *SSHD) URL() string { return "ssh://" + d.User + "@" + d.Addr() }

// KnownHostsLine is the known_hosts line of the server's host key.
func (d *SSHD) KnownHostsLine() string { return knownhosts.Line([]string{d.Addr()}, d.HostKey) }

// Log is what sshd has logged so far.
func (d *SSHD) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "sshd.log"))
	return string(b)
}

// AuthorizeKey lets pub log in.
func (d *SSHD) AuthorizeKey(t testing.TB, pub ssh.PublicKey) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(d.Dir, "authorized_keys"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(ssh.MarshalAuthorizedKey(pub)); err != nil {
		_ = f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// Start starts the server (again, after Stop) on the same port with the same keys.
func (d *SSHD) Start(t testing.TB) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		t.Fatal("sshd is already running")
	}
	log, err := os.OpenFile(filepath.Join(d.Dir, "sshd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = log.Close() }()
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", d.config)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	d.cmd, d.exited = cmd, exited
	deadline := time.Now().Add(10 * time.Second)
	for {
		if banner(d.Addr()) {
			return
		}
		select {
		case <-exited:
			d.cmd = nil
			t.Fatalf("sshd exited at start:\n%s", d.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not accept connections on %s:\n%s", d.Addr(), d.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server and every sshd process serving one of its connections, as a crash or a
// reboot of the host would; the programs those connections started are left alone.
func (d *SSHD) Stop(t testing.TB) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return
	}
	// The listener's children live on without it, so find them first.
	pids := append([]int{d.cmd.Process.Pid}, d.connectionPIDs()...)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-d.exited
	d.cmd = nil
	// Wait until the connection processes are gone, so the client sees its connection end.
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids[1:] {
		for processExists(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Restart stops and starts the server.
func (d *SSHD) Restart(t testing.TB) {
	t.Helper()
	d.Stop(t)
	d.Start(t)
}

// ConnectionPIDs are the sshd processes serving the server's current connections.
func (d *SSHD) ConnectionPIDs() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return nil
	}
	return d.connectionPIDs()
}

// connectionPIDs walks the process tree below the listener and keeps the sshd processes.
func (d *SSHD) connectionPIDs() []int {
	children := map[int][]Process{}
	for _, p := range Processes() {
		children[p.PPID] = append(children[p.PPID], p)
	}
	var out []int
	queue := []int{d.cmd.Process.Pid}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			if c.Exe == "/usr/sbin/sshd" {
				out = append(out, c.PID)
				queue = append(queue, c.PID)
			}
		}
	}
	return out
}

func processExists(pid int) bool {
	_, ok := ReadProcess(pid)
	return ok
}

// banner reports whether an SSH server answers on addr.
func banner(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 8)
	n, _ := conn.Read(buf)
	return bytes.HasPrefix(buf[:n], []byte("SSH-"))
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil { // the port is sshd's only once this listener lets go of it
		t.Fatal(err)
	}
	return port
}

// writeKey makes an ed25519 key and writes its private half to file in OpenSSH format.
func writeKey(t testing.TB, file string) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// NewSSHKey makes a key of the given kind ("ed25519", "ecdsa" or "rsa") with ssh-keygen and
// returns its private key file and public key.
func NewSSHKey(t testing.TB, dir, kind string) (file string, pub ssh.PublicKey) {
	t.Helper()
	keygen := RequireTool(t, "ssh-keygen")
	file = filepath.Join(dir, "id_"+kind)
	if out, err := exec.Command(keygen, "-q", "-t", kind, "-N", "", "-C", "test "+kind, "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -t %s: %v\n%s", kind, err, out)
	}
	data, err := os.ReadFile(file + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err = ssh.ParseAuthorizedKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return file, pub
}
