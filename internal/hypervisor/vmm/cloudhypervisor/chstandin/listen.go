package chstandin

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// ErrSocketInUse means another live VMM holds the API socket's lock (v53 and later).
var ErrSocketInUse = errors.New("API socket is already in use")

// Listen binds the API socket at path the way mode's release does. From v53 on, <path>.lock is
// locked first (failing with ErrSocketInUse while another VMM holds it) and a stale socket file
// is removed; up to v52 a leftover socket file makes the bind fail with EADDRINUSE. Closing the
// listener removes the socket file; the .lock file stays, as with CH.
func Listen(path string, mode Mode) (net.Listener, error) {
	if !mode.atLeast53() {
		return net.Listen("unix", path)
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", path, ErrSocketInUse)
		}
		return nil, fmt.Errorf("lock %s.lock: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		_ = lock.Close()
		return nil, fmt.Errorf("remove the stale API socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		_ = lock.Close()
		return nil, err
	}
	return &lockedListener{UnixListener: l.(*net.UnixListener), lock: lock}, nil
}

// ListenFD serves on an already bound and listening socket (--api-socket fd=N).
func ListenFD(fd int) (net.Listener, error) {
	f := os.NewFile(uintptr(fd), fmt.Sprintf("api-socket-fd-%d", fd))
	if f == nil {
		return nil, fmt.Errorf("--api-socket fd=%d: not an open file descriptor", fd)
	}
	defer func() { _ = f.Close() }()
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("--api-socket fd=%d: %w", fd, err)
	}
	return l, nil
}

// lockedListener holds the socket's .lock file for as long as it listens.
type lockedListener struct {
	*net.UnixListener
	lock *os.File
}

func (l *lockedListener) Close() error {
	err := l.UnixListener.Close()
	if lerr := l.lock.Close(); err == nil {
		err = lerr
	}
	return err
}
