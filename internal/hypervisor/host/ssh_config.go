package host

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kevinburke/ssh_config"
)

// Host kinds, as ParseHostURL names them.
const (
	KindLocal = "local"
	KindSSH   = "ssh"
)

// HostURL is a parsed host address: the local machine, or a machine reached over SSH.
type HostURL struct {
	Kind string // KindLocal or KindSSH
	User string // "" when the URL names none
	Host string // host name, address or ~/.ssh/config alias (ssh only)
	Port int    // 0 when the URL names none
}

// ParseHostURL parses a host address: "" or "unix://" is this machine, "ssh://[user@]host[:port]"
// a machine reached over SSH.
func ParseHostURL(s string) (HostURL, error) {
	const allowed = `allowed: "" or "unix://" for this machine, or "ssh://[user@]host[:port]"`
	if s == "" || s == "unix://" {
		return HostURL{Kind: KindLocal}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return HostURL{}, fmt.Errorf("host %q is not a URL (%v); %s", s, err, allowed)
	}
	switch {
	case u.Scheme == "unix":
		return HostURL{}, fmt.Errorf("host %q: unix:// takes no path, it always means this machine; %s", s, allowed)
	case u.Scheme != "ssh":
		return HostURL{}, fmt.Errorf("host %q has the scheme %q; %s", s, u.Scheme, allowed)
	case u.Opaque != "" || u.Hostname() == "":
		return HostURL{}, fmt.Errorf("host %q names no host; %s", s, allowed)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return HostURL{}, fmt.Errorf("host %q has a path, query or fragment, which an SSH address cannot have; %s", s, allowed)
	}
	if _, ok := u.User.Password(); ok {
		return HostURL{}, fmt.Errorf("host %q carries a password; SSH hosts are reached with keys only (private_key, private_key_file or ssh-agent)", s)
	}
	if u.User != nil && u.User.Username() == "" {
		return HostURL{}, fmt.Errorf("host %q has an empty user name before '@'; name the user or leave out the '@'; %s", s, allowed)
	}
	h := HostURL{Kind: KindSSH, User: u.User.Username(), Host: u.Hostname()}
	if p := u.Port(); p != "" {
		port, err := strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return HostURL{}, fmt.Errorf("host %q has the port %q; a port is a number from 1 to 65535", s, p)
		}
		h.Port = port
	}
	return h, nil
}

// SSHConfig says how to reach a host over SSH. Empty fields take OpenSSH's defaults.
type SSHConfig struct {
	// Address is "ssh://[user@]host[:port]", or a Host alias of the ssh config file.
	Address string
	// User logs in when Address names none; the ssh config file's User and then the local user
	// name come next.
	User string
	// PrivateKey is a PEM private key (ed25519, ecdsa or rsa; not encrypted).
	PrivateKey string
	// PrivateKeyFile is a private key file; "~/" is the home directory.
	PrivateKeyFile string
	// AgentSocket is the ssh-agent socket; empty means $SSH_AUTH_SOCK. DisableAgent turns it off.
	AgentSocket  string
	DisableAgent bool
	// KnownHostsFile verifies host keys; empty means the ssh config file's UserKnownHostsFile,
	// then ~/.ssh/known_hosts (and /etc/ssh/ssh_known_hosts).
	KnownHostsFile string
	// HostKey pins the host's key instead: a known_hosts line or "type base64" (one per line).
	HostKey string
	// InsecureIgnoreHostKey accepts any host key. Never the default; Warn is told when it is set.
	InsecureIgnoreHostKey bool
	// SSHConfigFile is read for User, Port, HostName, IdentityFile, UserKnownHostsFile and
	// ProxyJump; empty means ~/.ssh/config when it exists, "none" reads no file.
	SSHConfigFile string
	// KeepAlive is the interval of keepalive requests; a connection that misses one is closed and
	// the next call reconnects. Default 15s; negative turns keepalives off.
	KeepAlive time.Duration
	// ConnectTimeout bounds connecting and logging in. Default 20s.
	ConnectTimeout time.Duration
	// MaxSessions is the server's MaxSessions (OpenSSH's default is 10). One session serves
	// files, one holds locks, the rest run commands.
	MaxSessions int
	// Warn receives warnings, such as the one for InsecureIgnoreHostKey.
	Warn func(msg string)
}

// endpoint is one SSH server to log in to, after the ssh config file has been applied.
type endpoint struct {
	alias string // the name the user wrote, which the ssh config file matches
	user  string
	host  string // what to dial
	port  int
}

func (e endpoint) addr() string { return net.JoinHostPort(e.host, strconv.Itoa(e.port)) }

func (e endpoint) String() string { return e.user + "@" + e.addr() }

// target is a fully resolved SSHConfig: where to go, through which jump hosts, with what.
type target struct {
	endpoint
	jumps          []endpoint
	identityFiles  []string // from the ssh config file, in order
	knownHosts     []string // files to look keys up in; the first is where to add one
	keepAlive      time.Duration
	connectTimeout time.Duration
	maxSessions    int
}

// resolve applies defaults and the ssh config file to cfg.
func resolve(cfg SSHConfig) (*target, error) {
	addr := cfg.Address
	if addr == "" {
		return nil, errors.New(`ssh: no address; want "ssh://[user@]host[:port]" or a host alias`)
	}
	if !strings.Contains(addr, "://") {
		addr = "ssh://" + addr
	}
	u, err := ParseHostURL(addr)
	if err != nil {
		return nil, err
	}
	if u.Kind != KindSSH {
		return nil, fmt.Errorf("ssh: %q is the local host, not an SSH address", cfg.Address)
	}
	if u.User != "" && cfg.User != "" && u.User != cfg.User {
		return nil, fmt.Errorf("ssh: the address %q logs in as %q but user is %q; set one of them", cfg.Address, u.User, cfg.User)
	}
	sc, err := loadSSHConfig(cfg.SSHConfigFile, cfg.Warn)
	if err != nil {
		return nil, err
	}
	localUser := currentUser()
	t := &target{
		keepAlive: cfg.KeepAlive, connectTimeout: cfg.ConnectTimeout, maxSessions: cfg.MaxSessions,
	}
	t.endpoint = sc.endpoint(u.Host, firstNonEmpty(u.User, cfg.User), u.Port, localUser)
	if jump := sc.get(u.Host, "ProxyJump"); jump != "" && !strings.EqualFold(jump, "none") {
		for _, hop := range strings.Split(jump, ",") {
			if !strings.Contains(hop, "://") {
				hop = "ssh://" + strings.TrimSpace(hop)
			}
			hu, err := ParseHostURL(hop)
			if err != nil || hu.Kind != KindSSH {
				return nil, fmt.Errorf("ssh: ProxyJump %q for %s in %s: %v", jump, u.Host, sc.file, err)
			}
			t.jumps = append(t.jumps, sc.endpoint(hu.Host, hu.User, hu.Port, localUser))
		}
	}
	for _, alias := range append([]string{u.Host}, jumpAliases(t.jumps)...) {
		for _, f := range sc.getAll(alias, "IdentityFile") {
			t.identityFiles = appendUnique(t.identityFiles, expandPath(f, t.endpoint))
		}
	}
	switch {
	case cfg.KnownHostsFile != "":
		t.knownHosts = []string{expandPath(cfg.KnownHostsFile, t.endpoint)}
	case sc.get(u.Host, "UserKnownHostsFile") != "":
		for _, f := range strings.Fields(sc.get(u.Host, "UserKnownHostsFile")) {
			t.knownHosts = append(t.knownHosts, expandPath(f, t.endpoint))
		}
	default:
		t.knownHosts = []string{expandPath("~/.ssh/known_hosts", t.endpoint), "/etc/ssh/ssh_known_hosts"}
	}
	if t.keepAlive == 0 {
		t.keepAlive = 15 * time.Second
	}
	if t.connectTimeout <= 0 {
		t.connectTimeout = 20 * time.Second
	}
	if t.maxSessions == 0 {
		t.maxSessions = 10
	}
	if t.maxSessions < 3 {
		return nil, fmt.Errorf("ssh: max sessions %d is too low: one session serves files, one holds locks and at least one runs commands, so it must be 3 or more", t.maxSessions)
	}
	return t, nil
}

func jumpAliases(jumps []endpoint) []string {
	var out []string
	for _, j := range jumps {
		out = append(out, j.alias)
	}
	return out
}

// sshConfigFile is a parsed ssh config file; the zero value has no settings.
type sshConfigFile struct {
	file string
	cfg  *ssh_config.Config
}

// loadSSHConfig reads the ssh config file. A broken default file is skipped with a warning, so an
// unrelated line in ~/.ssh/config cannot lock the user out; a file named explicitly must parse.
func loadSSHConfig(file string, warn func(string)) (sshConfigFile, error) {
	if strings.EqualFold(file, "none") {
		return sshConfigFile{}, nil
	}
	explicit := file != ""
	if !explicit {
		file = "~/.ssh/config"
	}
	file = expandPath(file, endpoint{})
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return sshConfigFile{}, nil
	}
	if err != nil {
		return sshConfigFile{}, fmt.Errorf("ssh: read the ssh config file: %w", err)
	}
	defer func() { _ = f.Close() }()
	cfg, err := ssh_config.Decode(f)
	if err != nil {
		if explicit {
			return sshConfigFile{}, fmt.Errorf("ssh: the ssh config file %s: %w", file, err)
		}
		if warn != nil {
			warn(fmt.Sprintf("%s is not used: %v", file, err))
		}
		return sshConfigFile{}, nil
	}
	return sshConfigFile{file: file, cfg: cfg}, nil
}

func (s sshConfigFile) get(alias, key string) string {
	if s.cfg == nil {
		return ""
	}
	v, _ := s.cfg.Get(alias, key)
	return v
}

func (s sshConfigFile) getAll(alias, key string) []string {
	if s.cfg == nil {
		return nil
	}
	v, _ := s.cfg.GetAll(alias, key)
	return v
}

// endpoint applies HostName, Port and User of the ssh config file to an alias; what the address
// says itself wins.
func (s sshConfigFile) endpoint(alias, user string, port int, localUser string) endpoint {
	e := endpoint{alias: alias, user: user, host: alias, port: port}
	if h := s.get(alias, "HostName"); h != "" {
		e.host = strings.ReplaceAll(h, "%h", alias)
	}
	if e.port == 0 {
		if p, err := strconv.Atoi(s.get(alias, "Port")); err == nil && p > 0 && p < 65536 {
			e.port = p
		} else {
			e.port = 22
		}
	}
	if e.user == "" {
		e.user = firstNonEmpty(s.get(alias, "User"), localUser)
	}
	return e
}

// expandPath expands "~" and the ssh config tokens %d (home), %u (local user), %r (remote user)
// and %h (remote host).
func expandPath(p string, e endpoint) string {
	home, _ := os.UserHomeDir()
	if p == "~" || strings.HasPrefix(p, "~/") {
		p = filepath.Join(home, p[1:])
	}
	if !strings.Contains(p, "%") {
		return p
	}
	return strings.NewReplacer("%%", "%", "%d", home, "%u", currentUser(), "%r", e.user, "%h", e.host).Replace(p)
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func appendUnique(list []string, s string) []string {
	for _, v := range list {
		if v == s {
			return list
		}
	}
	return append(list, s)
}
