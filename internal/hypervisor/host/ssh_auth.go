package host

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

var (
	// ErrHostKeyUnknown: the host presented a key that no known_hosts file lists for it.
	ErrHostKeyUnknown = errors.New("ssh: host key unknown")
	// ErrHostKeyChanged: the host presented a key other than the one known or pinned for it.
	ErrHostKeyChanged = errors.New("ssh: host key changed")
	// ErrAuth: the server accepted none of the credentials offered.
	ErrAuth = errors.New("ssh: authentication failed")
	// ErrConnectionLost: the connection to the host ended, during the call (what the call did
	// on the host may or may not have happened) or before it and reconnecting failed. The next
	// call tries to reconnect again.
	ErrConnectionLost = errors.New("ssh: connection lost")
)

// credentials are the private keys a connection offers, each with where it came from.
type credentials struct {
	inline       ssh.Signer // PrivateKey, parsed once
	keyFile      string     // PrivateKeyFile
	identities   []string   // IdentityFile of the ssh config file
	agentSocket  string     // "" when the agent is not used
	defaultFiles bool       // try ~/.ssh/id_* when nothing else names a key
}

func newCredentials(cfg SSHConfig, t *target) (*credentials, error) {
	c := &credentials{identities: t.identityFiles}
	if cfg.PrivateKey != "" {
		s, err := parsePrivateKey(cfg.PrivateKey)
		if err != nil {
			return nil, err
		}
		c.inline = s
	}
	if cfg.PrivateKeyFile != "" {
		c.keyFile = expandPath(cfg.PrivateKeyFile, t.endpoint)
		if _, err := loadKeyFile(c.keyFile); err != nil {
			return nil, fmt.Errorf("ssh: private_key_file: %w", err)
		}
	}
	if !cfg.DisableAgent {
		c.agentSocket = firstNonEmpty(cfg.AgentSocket, os.Getenv("SSH_AUTH_SOCK"))
	}
	c.defaultFiles = c.inline == nil && c.keyFile == "" && len(c.identities) == 0
	return c, nil
}

// CheckPrivateKey checks a PrivateKey as DialSSH will read it, without connecting.
func CheckPrivateKey(pem string) error {
	_, err := parsePrivateKey(pem)
	return err
}

func parsePrivateKey(pem string) (ssh.Signer, error) {
	s, err := ssh.ParsePrivateKey([]byte(pem))
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, errors.New("ssh: private_key is encrypted with a passphrase, which is not supported; load it into ssh-agent instead")
	}
	if err != nil {
		return nil, fmt.Errorf("ssh: private_key is not a PEM or OpenSSH private key: %w", err)
	}
	return s, nil
}

func loadKeyFile(file string) (ssh.Signer, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("%s is encrypted with a passphrase; load it into ssh-agent to use it", file)
	}
	if err != nil {
		return nil, fmt.Errorf("%s is not a private key: %w", file, err)
	}
	return s, nil
}

// offer is what one login attempt offered: the keys, and the keys that could not be offered.
type offer struct {
	signers []ssh.Signer
	tried   []string // "publickey ssh-ed25519 SHA256:… (private_key_file /k)"
	skipped []string // "key file ~/.ssh/id_rsa: encrypted …"
	agent   net.Conn
}

// collect loads every key, in the order they are offered: the configured key, the configured key
// file, the ssh config file's IdentityFiles, the agent's keys, and ~/.ssh/id_* when no key was
// named. Keys are read at each login, so a rotated key file or a changed agent is picked up.
func (c *credentials) collect() *offer {
	o := &offer{}
	seen := map[string]bool{}
	add := func(s ssh.Signer, from string) {
		k := string(s.PublicKey().Marshal())
		if seen[k] {
			return
		}
		seen[k] = true
		o.signers = append(o.signers, s)
		o.tried = append(o.tried, fmt.Sprintf("publickey %s %s (%s)", s.PublicKey().Type(), ssh.FingerprintSHA256(s.PublicKey()), from))
	}
	if c.inline != nil {
		add(c.inline, "private_key")
	}
	files := []string{}
	if c.keyFile != "" {
		files = append(files, c.keyFile)
	}
	files = append(files, c.identities...)
	for _, f := range files {
		s, err := loadKeyFile(f)
		if err != nil {
			o.skipped = append(o.skipped, "key file "+err.Error())
			continue
		}
		add(s, "key file "+f)
	}
	if c.agentSocket != "" {
		conn, err := net.Dial("unix", c.agentSocket)
		if err != nil {
			o.skipped = append(o.skipped, fmt.Sprintf("ssh-agent at %s: %v", c.agentSocket, err))
		} else {
			o.agent = conn
			ag := agent.NewClient(conn)
			keys, _ := ag.List()
			signers, err := ag.Signers()
			if err != nil {
				o.skipped = append(o.skipped, fmt.Sprintf("ssh-agent at %s: %v", c.agentSocket, err))
			}
			for i, s := range signers {
				from := "ssh-agent"
				if i < len(keys) && keys[i].Comment != "" {
					from += " key " + strconv.Quote(keys[i].Comment)
				}
				add(s, from)
			}
		}
	}
	if c.defaultFiles {
		for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			f := expandPath("~/.ssh/"+name, endpoint{})
			if _, err := os.Stat(f); err != nil {
				continue
			}
			s, err := loadKeyFile(f)
			if err != nil {
				o.skipped = append(o.skipped, "key file "+err.Error())
				continue
			}
			add(s, "key file "+f)
		}
	}
	return o
}

func (o *offer) close() {
	if o.agent != nil {
		_ = o.agent.Close()
	}
}

// authError explains a refused login: every key offered, and every key that could not be.
func (o *offer) authError(e endpoint, cause error) error {
	var b strings.Builder
	if len(o.signers) == 0 {
		fmt.Fprintf(&b, "%v: no key to log in to %s with; set private_key or private_key_file, add a key to ssh-agent (SSH_AUTH_SOCK), or name an IdentityFile in ~/.ssh/config", ErrAuth, e)
	} else {
		fmt.Fprintf(&b, "%v: %s accepted none of the keys offered; methods tried: %s", ErrAuth, e, strings.Join(o.tried, ", "))
	}
	if len(o.skipped) > 0 {
		fmt.Fprintf(&b, "; not offered: %s", strings.Join(o.skipped, "; "))
	}
	fmt.Fprintf(&b, " (server said: %v)", cause)
	return &wrapped{msg: b.String(), err: ErrAuth}
}

// wrapped is an error with its own message that still matches a sentinel with errors.Is.
type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

// hostKeys decides which host keys are trusted.
type hostKeys struct {
	insecure bool
	pinned   []ssh.PublicKey
	files    []string // known_hosts files; a missing one lists no key, the first is where a new key belongs
}

func newHostKeys(cfg SSHConfig, t *target) (*hostKeys, error) {
	pinned, err := parseHostKeys(cfg.HostKey)
	if err != nil {
		return nil, err
	}
	return &hostKeys{insecure: cfg.InsecureIgnoreHostKey, files: t.knownHosts, pinned: pinned}, nil
}

// CheckHostKey checks a HostKey as DialSSH will read it, without connecting.
func CheckHostKey(lines string) error {
	_, err := parseHostKeys(lines)
	return err
}

// parseHostKeys reads pinned host keys, one a line.
func parseHostKeys(lines string) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	for _, line := range strings.Split(strings.TrimSpace(lines), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, err := parseHostKeyLine(line)
		if err != nil {
			return nil, fmt.Errorf("ssh: host_key %q is neither a known_hosts line nor \"type base64\": %w", line, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func parseHostKeyLine(line string) (ssh.PublicKey, error) {
	if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err == nil {
		return k, nil
	}
	_, _, k, _, _, err := ssh.ParseKnownHosts([]byte(line))
	return k, err
}

// probeKey is never any host's key; checking it against known_hosts lists the keys known for a host.
var probeKey = sync.OnceValue(func() ssh.PublicKey {
	_, priv, _ := ed25519.GenerateKey(nil)
	s, _ := ssh.NewSignerFromKey(priv)
	return s.PublicKey()
})

// callback is the host key check for one server (addr is "host:port" as dialled), with the host
// key algorithms to ask for: those of the keys known for it, so that a server with several keys
// presents one that can be checked.
func (h *hostKeys) callback(addr string, remote net.Addr) (ssh.HostKeyCallback, []string, error) {
	if h.insecure {
		return ssh.InsecureIgnoreHostKey(), nil, nil
	}
	if len(h.pinned) > 0 {
		return h.checkPinned(addr), algorithmsFor(h.pinned), nil
	}
	var existing []string
	for _, f := range h.files {
		if _, err := os.Stat(f); err == nil {
			existing = append(existing, f)
		}
	}
	if len(existing) == 0 {
		return func(_ string, _ net.Addr, key ssh.PublicKey) error { return h.unknown(addr, key) }, nil, nil
	}
	db, err := knownhosts.New(existing...)
	if err != nil {
		return nil, nil, fmt.Errorf("ssh: read known hosts: %w", err)
	}
	var known []ssh.PublicKey
	var keyErr *knownhosts.KeyError
	if errors.As(db(addr, remote, probeKey()), &keyErr) {
		for _, k := range keyErr.Want {
			known = append(known, k.Key)
		}
	}
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := db(hostname, remote, key)
		var keyErr *knownhosts.KeyError
		var revoked *knownhosts.RevokedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &revoked):
			return fmt.Errorf("%w: the host key of %s (%s %s) is marked @revoked in %s:%d; refusing to connect", ErrHostKeyChanged,
				knownhosts.Normalize(addr), key.Type(), ssh.FingerprintSHA256(key), revoked.Revoked.Filename, revoked.Revoked.Line)
		case errors.As(err, &keyErr) && len(keyErr.Want) == 0:
			return h.unknown(addr, key)
		case errors.As(err, &keyErr):
			return h.changed(addr, key, keyErr.Want)
		}
		return err
	}, algorithmsFor(known), nil
}

func (h *hostKeys) checkPinned(addr string) ssh.HostKeyCallback {
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		for _, k := range h.pinned {
			if bytes.Equal(k.Marshal(), key.Marshal()) {
				return nil
			}
		}
		var want []string
		for _, k := range h.pinned {
			want = append(want, k.Type()+" "+ssh.FingerprintSHA256(k))
		}
		return &wrapped{err: ErrHostKeyChanged, msg: fmt.Sprintf(
			"%v: %s presented %s %s, but host_key pins %s. Someone may be intercepting the connection, or the host was reinstalled; refusing to connect. If the new key is right, set host_key to %q",
			ErrHostKeyChanged, knownhosts.Normalize(addr), key.Type(), ssh.FingerprintSHA256(key), strings.Join(want, ", "), knownhosts.Line([]string{addr}, key))}
	}
}

func (h *hostKeys) unknown(addr string, key ssh.PublicKey) error {
	file := "~/.ssh/known_hosts"
	if len(h.files) > 0 {
		file = h.files[0]
	}
	return &wrapped{err: ErrHostKeyUnknown, msg: fmt.Sprintf(
		"%v: %s presented %s %s, which is not in %s; refusing to connect. If that fingerprint is the host's, trust it with `%s >> %s`, or set host_key to %q",
		ErrHostKeyUnknown, knownhosts.Normalize(addr), key.Type(), ssh.FingerprintSHA256(key), strings.Join(h.files, " or "),
		keyscan(addr), file, knownhosts.Line([]string{addr}, key))}
}

func (h *hostKeys) changed(addr string, key ssh.PublicKey, want []knownhosts.KnownKey) error {
	var known []string
	for _, k := range want {
		known = append(known, fmt.Sprintf("%s %s (%s:%d)", k.Key.Type(), ssh.FingerprintSHA256(k.Key), k.Filename, k.Line))
	}
	file := want[0].Filename
	return &wrapped{err: ErrHostKeyChanged, msg: fmt.Sprintf(
		"%v: %s presented %s %s, but the known key is %s. Someone may be intercepting the connection, or the host was reinstalled; refusing to connect. If the change is expected, remove the old key with `ssh-keygen -R '%s' -f %s` and trust the new one with `%s >> %s`, or set host_key",
		ErrHostKeyChanged, knownhosts.Normalize(addr), key.Type(), ssh.FingerprintSHA256(key), strings.Join(known, ", "),
		knownhosts.Normalize(addr), file, keyscan(addr), file)}
}

func keyscan(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	if port == "22" {
		return "ssh-keyscan " + host
	}
	return "ssh-keyscan -p " + port + " " + host
}

// algorithmsFor lists the host key algorithms that produce signatures for keys.
func algorithmsFor(keys []ssh.PublicKey) []string {
	var algos []string
	for _, k := range keys {
		switch k.Type() {
		case ssh.KeyAlgoRSA:
			algos = appendUnique(appendUnique(appendUnique(algos, ssh.KeyAlgoRSASHA512), ssh.KeyAlgoRSASHA256), ssh.KeyAlgoRSA)
		default:
			algos = appendUnique(algos, k.Type())
		}
	}
	return algos
}
