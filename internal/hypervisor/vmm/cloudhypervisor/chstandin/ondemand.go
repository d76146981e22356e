package chstandin

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// On-demand restore (memory_restore_mode OnDemand, v52 on), as vmm/src/memory_manager.rs does it
// (restore_by_uffd): the restore opens the memory file and reads none of it. A page is read when
// the guest first touches it; the stand-in's guest touches its first page (the one holding the
// snapshot's token) as soon as it runs. From v53 on, a background thread also reads every page
// nobody asked for, one at a time, and closes the file when all are in; until then vm.snapshot
// answers 500 "VM on-demand memory restore is still in progress". In v52 nothing is read in the
// background and the file stays open until the VM goes. The file must not be needed up front.

const (
	pageSize = 4096
	// msgRestoring is VmError::VmRestoring (v53 on).
	msgRestoring = "VM on-demand memory restore is still in progress"
	// uffdIocNew is USERFAULTFD_IOC_NEW, _IO(0xAA, 0x00), the ioctl of /dev/userfaultfd.
	uffdIocNew = 0xAA00
)

// lazyMemory is the memory file of an on-demand restore, open for as long as CH keeps it.
type lazyMemory struct {
	mu     sync.Mutex
	f      *os.File // nil once closed
	token  string
	closed chan struct{}
	// restoring is true until the background prefault has read every page (v53 on).
	restoring atomic.Bool
	// first is the outcome of the guest's first touch, read once: the counter, or what was wrong.
	firstOnce    sync.Once
	firstCounter uint64
	firstErr     error
}

// openLazy opens path for an on-demand restore after checking, without reading it, that it has
// the snapshot's size.
func openLazy(path string, mem memoryState) (*lazyMemory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, causef("Failed to open %s: %s", MemoryFile, osError(err))
	}
	fi, err := f.Stat()
	if err == nil && uint64(fi.Size()) != mem.total() {
		err = fmt.Errorf("%s is %d bytes, but the snapshot's memory ranges add up to %d", MemoryFile, fi.Size(), mem.total())
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &lazyMemory{f: f, token: mem.Token, closed: make(chan struct{})}, nil
}

// pread reads one page at off; false once the file is closed.
func (l *lazyMemory) pread(buf []byte, off int64) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, false
	}
	n, err := l.f.ReadAt(buf, off)
	if err != nil && err != io.EOF {
		return n, false
	}
	return n, true
}

// touchFirstPage is the guest's first access: its page is read from the file, checked, and the
// counter in it returned.
func (l *lazyMemory) touchFirstPage() (uint64, error) {
	l.firstOnce.Do(func() {
		buf := make([]byte, pageSize)
		n, ok := l.pread(buf, 0)
		if !ok {
			l.firstErr = fmt.Errorf("%s could not be read", MemoryFile)
			return
		}
		l.firstCounter, l.firstErr = parseFirstPage(buf[:n], l.token)
	})
	return l.firstCounter, l.firstErr
}

// prefault reads every page in the background, at least as slowly as minimum says, and then
// closes the file: v53's handler thread.
func (l *lazyMemory) prefault(size int64, minimum time.Duration) {
	// The first page is kept as the guest's first touch, which may come after the file is closed.
	_, _ = l.touchFirstPage()
	start := time.Now()
	buf := make([]byte, pageSize)
	pages := (size + pageSize - 1) / pageSize
	for p := int64(0); p < pages; p++ {
		if _, ok := l.pread(buf, p*pageSize); !ok {
			return
		}
		if minimum > 0 {
			// Keep to the pace that spreads the pages over minimum.
			if ahead := time.Duration(p+1)*minimum/time.Duration(pages) - time.Since(start); ahead > 0 {
				select {
				case <-time.After(ahead):
				case <-l.closed:
					return
				}
			}
		}
	}
	l.restoring.Store(false)
	l.close()
}

// close releases the file: the prefault is done or the VM is gone.
func (l *lazyMemory) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
		close(l.closed)
	}
}

// Open reports whether the stand-in still holds the memory file open.
func (l *lazyMemory) open() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f != nil
}

// checkUserfaultfd gets a userfaultfd the way CH does (vmm/src/uffd.rs): /dev/userfaultfd, else
// the userfaultfd(2) call. A restore on demand fails without one.
func checkUserfaultfd() error {
	dev, err := os.OpenFile("/dev/userfaultfd", os.O_RDWR, 0)
	if err == nil {
		defer func() { _ = dev.Close() }()
		fd, err := unix.IoctlRetInt(int(dev.Fd()), uffdIocNew)
		if err == nil {
			_ = unix.Close(fd)
			return nil
		}
	}
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if errno != 0 {
		return errno
	}
	_ = unix.Close(int(fd))
	return nil
}
