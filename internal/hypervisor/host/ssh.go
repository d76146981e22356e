package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/crypto/ssh"
)

var _ Host = (*SSH)(nil)

// SSH is a host reached over SSH: commands run as argv in sessions, files move over SFTP, unix
// sockets are reached by stream-local forwarding, and locks are flock(1) locks on the host. All
// SSH values for one host and set of credentials share one connection. Paths are absolute paths
// on the host. The login shell of the remote user must be a POSIX shell.
type SSH struct {
	c         *sshConn
	closeOnce sync.Once
	lz4Mu     sync.Mutex
	lz4Known  bool   // the host answered where its lz4 is
	lz4Path   string // the host's lz4, "" when it has none
}

// DialSSH connects to the host described by cfg, or joins the process's existing connection to
// it. Close releases it.
func DialSSH(ctx context.Context, cfg SSHConfig) (*SSH, error) {
	t, err := resolve(cfg)
	if err != nil {
		return nil, err
	}
	creds, err := newCredentials(cfg, t)
	if err != nil {
		return nil, err
	}
	keys, err := newHostKeys(cfg, t)
	if err != nil {
		return nil, err
	}
	if cfg.InsecureIgnoreHostKey && cfg.Warn != nil {
		cfg.Warn(fmt.Sprintf("insecure_ignore_host_key is set: the host key of %s is not checked, so a machine in between can pose as the host and read or change everything sent to it. Pin the key with host_key, or add it to a known_hosts file, instead.", t.addr()))
	}
	key := connKey(cfg, t, creds)
	registry.Lock()
	c := registry.conns[key]
	if c == nil {
		c = &sshConn{key: key, t: t, creds: creds, keys: keys, execSlots: make(chan struct{}, t.maxSessions-2)}
		registry.conns[key] = c
	}
	c.refs++
	registry.Unlock()
	s := &SSH{c: c}
	if _, err := c.get(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases this value's share of the connection; the last one closes it.
func (s *SSH) Close() error {
	s.closeOnce.Do(func() {
		registry.Lock()
		s.c.refs--
		last := s.c.refs == 0
		if last && registry.conns[s.c.key] == s.c {
			delete(registry.conns, s.c.key)
		}
		registry.Unlock()
		if last {
			s.c.shutdown()
		}
	})
	return nil
}

// Handshakes is the number of SSH logins the shared connection has made, reconnects and jump
// hosts included.
func (s *SSH) Handshakes() int64 { return s.c.handshakes.Load() }

// String is the host as "user@host:port".
func (s *SSH) String() string { return s.c.t.endpoint.String() }

// call runs op on a live connection. If the connection turns out to have died under it, op is
// repeated once on a new connection when retry says that is safe; otherwise the error wraps
// ErrConnectionLost.
func (s *SSH) call(ctx context.Context, retry bool, op func(*generation) error) error {
	for attempt := 0; ; attempt++ {
		g, err := s.c.get(ctx)
		if err != nil {
			return err
		}
		err = op(g)
		if !g.lost(err) {
			return err
		}
		if !retry || attempt > 0 {
			if errors.Is(err, ErrConnectionLost) {
				return err
			}
			return fmt.Errorf("%w to %s: %w", ErrConnectionLost, s.c.t.endpoint, err)
		}
	}
}

func (s *SSH) DialUnix(ctx context.Context, p string) (net.Conn, error) {
	var conn net.Conn
	err := s.call(ctx, true, func(g *generation) error {
		var err error
		conn, err = g.client.DialContext(ctx, "unix", p)
		if err == nil || g.lost(err) {
			return err
		}
		var open *ssh.OpenChannelError
		if errors.As(err, &open) && open.Reason == ssh.Prohibited {
			return fmt.Errorf("dial unix %s: %s forbids unix socket forwarding (AllowStreamLocalForwarding or DisableForwarding in its sshd_config): %w", p, s.c.t.endpoint, err)
		}
		if _, serr := g.sftp.Lstat(p); errors.Is(serr, fs.ErrNotExist) {
			return &net.OpError{Op: "dial", Net: "unix", Addr: &net.UnixAddr{Name: p, Net: "unix"}, Err: &os.SyscallError{Syscall: "connect", Err: syscall.ENOENT}}
		}
		return &net.OpError{Op: "dial", Net: "unix", Addr: &net.UnixAddr{Name: p, Net: "unix"}, Err: err}
	})
	return conn, err
}

// DialTCP opens a direct-tcpip channel: the remote sshd makes the connection (AllowTcpForwarding).
func (s *SSH) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	var conn net.Conn
	err := s.call(ctx, true, func(g *generation) error {
		var err error
		conn, err = g.client.DialContext(ctx, "tcp", addr)
		if err == nil || g.lost(err) {
			return err
		}
		var open *ssh.OpenChannelError
		if errors.As(err, &open) && open.Reason == ssh.Prohibited {
			return fmt.Errorf("dial tcp %s: %s forbids TCP forwarding (AllowTcpForwarding or DisableForwarding in its sshd_config): %w", addr, s.c.t.endpoint, err)
		}
		return &net.OpError{Op: "dial", Net: "tcp", Err: err}
	})
	return conn, err
}
