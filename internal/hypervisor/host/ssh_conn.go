package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// registry shares one connection per host and set of credentials among every SSH value of the
// process, so all resources of a provider use one connection.
var registry = struct {
	sync.Mutex
	conns map[string]*sshConn
}{conns: map[string]*sshConn{}}

// sshConn is the shared connection to one host. It reconnects on the first call after the
// connection died; each connection is a generation.
type sshConn struct {
	key   string
	t     *target
	creds *credentials
	keys  *hostKeys
	refs  int // SSH values using it; guarded by registry

	// execSlots bounds the sessions that run commands, below the server's MaxSessions: one
	// session is the SFTP client's, one the lock keeper's.
	execSlots  chan struct{}
	handshakes atomic.Int64
	locks      pathLocks

	mu      sync.Mutex
	gen     *generation
	dialing *dialCall
	closed  bool
}

type dialCall struct {
	done      chan struct{}
	reconnect bool // a connection existed and died
	gen       *generation
	err       error
}

// generation is one live SSH connection with its SFTP client and, once needed, its lock keeper.
type generation struct {
	client    *ssh.Client
	jumps     []*ssh.Client
	sftp      *sftp.Client
	posixMove bool // posix-rename@openssh.com: rename over an existing file
	fsync     bool // fsync@openssh.com
	done      chan struct{}
	closeOnce sync.Once

	keeperMu sync.Mutex
	keeper   *lockKeeper
}

// connKey identifies a connection: same server, same login, same trust. Secrets are hashed.
func connKey(cfg SSHConfig, t *target, creds *credentials) string {
	h := sha256.New()
	_, _ = fmt.Fprintf(h, "%s|%v|%q|%q|%q|%q|%q|%q|%v|%d|%d|%s", t.endpoint, t.jumps, cfg.PrivateKey, cfg.PrivateKeyFile, t.identityFiles,
		creds.agentSocket, t.knownHosts, cfg.HostKey, cfg.InsecureIgnoreHostKey, t.maxSessions, t.keepAlive, t.connectTimeout)
	return hex.EncodeToString(h.Sum(nil))
}

// get returns the live connection, connecting when there is none. One dial serves every caller
// waiting for it, and it is not abandoned when one of them gives up.
func (c *sshConn) get(ctx context.Context) (*generation, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, fmt.Errorf("ssh: the connection to %s is closed", c.t.endpoint)
		}
		if g := c.gen; g != nil && !g.dead() {
			c.mu.Unlock()
			return g, nil
		}
		call := c.dialing
		if call == nil {
			call = &dialCall{done: make(chan struct{}), reconnect: c.gen != nil}
			c.dialing = call
			go c.dial(call)
		}
		c.mu.Unlock()
		select {
		case <-call.done:
			if call.err != nil && call.reconnect {
				return nil, fmt.Errorf("%w to %s, and reconnecting failed: %w", ErrConnectionLost, c.t.endpoint, call.err)
			}
			if call.err != nil {
				return nil, call.err
			}
			if !call.gen.dead() {
				return call.gen, nil
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("ssh: connect to %s: %w", c.t.endpoint, ctx.Err())
		}
	}
}

func (c *sshConn) dial(call *dialCall) {
	ctx, cancel := context.WithTimeout(context.Background(), c.t.connectTimeout)
	defer cancel()
	call.gen, call.err = c.connect(ctx)
	c.mu.Lock()
	c.dialing = nil
	if call.err == nil {
		if c.closed {
			call.gen.close()
			call.err = fmt.Errorf("ssh: the connection to %s is closed", c.t.endpoint)
		} else {
			c.gen = call.gen
		}
	}
	c.mu.Unlock()
	close(call.done)
}

// connect logs in (through the jump hosts, if any) and opens the SFTP client.
func (c *sshConn) connect(ctx context.Context) (*generation, error) {
	g := &generation{done: make(chan struct{})}
	var via *ssh.Client
	for _, j := range c.t.jumps {
		cl, err := c.handshake(ctx, via, j)
		if err != nil {
			g.closeJumps()
			return nil, fmt.Errorf("ssh: jump host %s: %w", j, err)
		}
		g.jumps = append(g.jumps, cl)
		via = cl
	}
	client, err := c.handshake(ctx, via, c.t.endpoint)
	if err != nil {
		g.closeJumps()
		return nil, err
	}
	g.client = client
	g.sftp, err = sftp.NewClient(client, sftp.UseConcurrentWrites(true))
	if err != nil {
		g.close()
		return nil, fmt.Errorf("ssh: start the SFTP subsystem on %s (the server needs a Subsystem sftp line): %w", c.t.endpoint, err)
	}
	_, g.posixMove = g.sftp.HasExtension("posix-rename@openssh.com")
	_, g.fsync = g.sftp.HasExtension("fsync@openssh.com")
	go func() {
		_ = client.Wait()
		g.close()
		close(g.done)
	}()
	if c.t.keepAlive > 0 {
		go g.keepAlive(c.t.keepAlive)
	}
	return g, nil
}

// handshake opens one SSH connection to e, directly or through via, and logs in.
func (c *sshConn) handshake(ctx context.Context, via *ssh.Client, e endpoint) (*ssh.Client, error) {
	addr := e.addr()
	conn, err := dialTCP(ctx, via, addr)
	if err != nil {
		return nil, fmt.Errorf("ssh: connect to %s: %w", addr, err)
	}
	// Abort a handshake that outlives ctx: x/crypto/ssh takes no context.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	hostKeyCallback, algos, err := c.keys.callback(addr, conn.RemoteAddr())
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	var hostKeyErr error
	o := c.creds.collect()
	defer o.close()
	cfg := &ssh.ClientConfig{
		User: e.user,
		Auth: []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) { return o.signers, nil })},
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			hostKeyErr = hostKeyCallback(hostname, remote, key)
			return hostKeyErr
		},
		HostKeyAlgorithms: algos,
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		_ = conn.Close()
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("ssh: log in to %s: %w", e, ctx.Err())
		case hostKeyErr != nil:
			return nil, hostKeyErr
		case strings.Contains(err.Error(), "no common algorithm for host key") && len(algos) > 0:
			// The host has no key of a known type any more: see what it has, to say so.
			if key, perr := c.presentedKey(ctx, via, addr); perr == nil {
				if kerr := hostKeyCallback(addr, conn.RemoteAddr(), key); kerr != nil {
					return nil, kerr
				}
			}
			return nil, &wrapped{err: ErrHostKeyChanged, msg: fmt.Sprintf("%v: %s offers no host key of the known types (%s); refusing to connect: %v",
				ErrHostKeyChanged, addr, strings.Join(algos, ", "), err)}
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, o.authError(e, err)
		}
		return nil, fmt.Errorf("ssh: log in to %s: %w", e, err)
	}
	c.handshakes.Add(1)
	return ssh.NewClient(sc, chans, reqs), nil
}

// dialTCP connects to addr, directly or from the jump host via.
func dialTCP(ctx context.Context, via *ssh.Client, addr string) (net.Conn, error) {
	if via != nil {
		return via.DialContext(ctx, "tcp", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// presentedKey is the host key addr presents when any type is allowed; nothing is logged in.
func (c *sshConn) presentedKey(ctx context.Context, via *ssh.Client, addr string) (ssh.PublicKey, error) {
	conn, err := dialTCP(ctx, via, addr)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	var key ssh.PublicKey
	errSeen := errors.New("host key seen")
	_, _, _, err = ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error { key = k; return errSeen },
	})
	if key == nil {
		return nil, err
	}
	return key, nil
}

func (g *generation) dead() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// close ends the connection; the Wait goroutine then marks the generation dead.
func (g *generation) close() {
	g.closeOnce.Do(func() {
		// The transport first: closing the SFTP client waits for its session to end, which a
		// server that stopped answering never does.
		if g.client != nil {
			_ = g.client.Close()
		}
		g.closeJumps()
		g.keeperMu.Lock()
		if g.keeper != nil {
			g.keeper.close()
		}
		g.keeperMu.Unlock()
		if g.sftp != nil {
			_ = g.sftp.Close()
		}
	})
}

func (g *generation) closeJumps() {
	for i := len(g.jumps) - 1; i >= 0; i-- {
		_ = g.jumps[i].Close()
	}
}

// keepAlive closes a connection that stops answering, so the next call reconnects instead of
// hanging on it.
func (g *generation) keepAlive(every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-g.done:
			return
		case <-tick.C:
			if !g.ping(every) {
				g.close()
				return
			}
		}
	}
}

// ping reports whether the server answers a keepalive request within timeout.
func (g *generation) ping(timeout time.Duration) bool {
	answered := make(chan error, 1)
	go func() {
		_, _, err := g.client.SendRequest("keepalive@openssh.com", true, nil)
		answered <- err
	}()
	select {
	case err := <-answered:
		return err == nil
	case <-time.After(timeout):
		return false
	case <-g.done:
		return false
	}
}

// lost reports whether err came from this connection ending rather than from the host's answer.
// An error that looks like the transport failing is confirmed with a keepalive, and a connection
// that does not answer it is closed.
func (g *generation) lost(err error) bool {
	if err == nil {
		return false
	}
	if g.dead() {
		return true
	}
	var exitMissing *ssh.ExitMissingError
	transport := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, sftp.ErrSSHFxConnectionLost) || errors.Is(err, sftp.ErrSSHFxNoConnection) || errors.As(err, &exitMissing)
	if !transport {
		return false
	}
	if g.ping(5 * time.Second) {
		return false
	}
	g.close()
	return true
}

// lockKeeper starts the connection's lock session on first use.
func (g *generation) lockKeeper() (*lockKeeper, error) {
	g.keeperMu.Lock()
	defer g.keeperMu.Unlock()
	if g.keeper != nil {
		select {
		case <-g.keeper.done:
			g.keeper.close()
			g.keeper = nil
		default:
			return g.keeper, nil
		}
	}
	k, err := startLockKeeper(g.client)
	if err != nil {
		return nil, err
	}
	g.keeper = k
	return k, nil
}

func (c *sshConn) shutdown() {
	c.mu.Lock()
	c.closed = true
	g := c.gen
	c.gen = nil
	c.mu.Unlock()
	if g != nil {
		g.close()
	}
}

// pathLocks makes locks exclusive within the process as well, so that a lock survives a
// reconnect for every flow of this process even though the host released it.
type pathLocks struct {
	mu sync.Mutex
	m  map[string]*pathLock
}

type pathLock struct {
	ch   chan struct{}
	refs int
}

func (l *pathLocks) lock(ctx context.Context, p string) (func(), error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*pathLock{}
	}
	pl := l.m[p]
	if pl == nil {
		pl = &pathLock{ch: make(chan struct{}, 1)}
		l.m[p] = pl
	}
	pl.refs++
	l.mu.Unlock()
	put := func() {
		l.mu.Lock()
		if pl.refs--; pl.refs == 0 {
			delete(l.m, p)
		}
		l.mu.Unlock()
	}
	select {
	case pl.ch <- struct{}{}:
		return func() { <-pl.ch; put() }, nil
	case <-ctx.Done():
		put()
		return nil, fmt.Errorf("lock %s: %w", p, ctx.Err())
	}
}
