package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"syscall"

	"github.com/pkg/sftp"
)

// files runs op with the SFTP client; every file operation here is safe to repeat.
func (s *SSH) files(ctx context.Context, op func(*generation, *sftp.Client) error) error {
	return s.call(ctx, true, func(g *generation) error { return op(g, g.sftp) })
}

func (s *SSH) ReadFile(ctx context.Context, p string) ([]byte, error) {
	var data []byte
	err := s.files(ctx, func(_ *generation, c *sftp.Client) (err error) {
		data, err = readFile(c, p)
		return err
	})
	return data, err
}

// readFile reads a whole file in two round trips: the size and the handle at once, then the
// content and a read past its end (which says EOF, or that the file grew) at once.
func readFile(c *sftp.Client, p string) ([]byte, error) {
	var size int64 = -1
	sized := make(chan struct{})
	go func() {
		defer close(sized)
		if fi, err := c.Stat(p); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
	}()
	f, err := c.Open(p)
	<-sized
	return readOpened(f, err, p, size)
}

// readProc reads a /proc file, which reports no size: it is read until EOF.
func readProc(c *sftp.Client, p string) ([]byte, error) {
	f, err := c.Open(p)
	return readOpened(f, err, p, 0)
}

func readOpened(f *sftp.File, err error, p string, size int64) ([]byte, error) {
	if err != nil {
		return nil, pathErr("open", p, err)
	}
	// Nothing waits on the close of a read-only handle; the server handles it in order.
	defer func() {
		go func() { _ = f.Close() }()
	}()
	head := make([]byte, max(size, 0))
	var headLen int
	var headErr error
	read := make(chan struct{})
	go func() {
		defer close(read)
		if len(head) > 0 {
			headLen, headErr = f.ReadAt(head, 0)
		}
	}()
	rest, restErr := readFrom(f, int64(len(head)))
	<-read
	if headErr != nil && !errors.Is(headErr, io.EOF) {
		return nil, pathErr("read", p, headErr)
	}
	if restErr != nil {
		return nil, pathErr("read", p, restErr)
	}
	if headLen < len(head) {
		if len(rest) == 0 {
			return head[:headLen], nil // shrunk since the stat
		}
		// Shrunk and grew again between the two reads: read it as it is now.
		all, err := readFrom(f, 0)
		return all, pathErr("read", p, err)
	}
	return append(head, rest...), nil
}

// readFrom reads from off to EOF, a packet's worth per request.
func readFrom(f *sftp.File, off int64) ([]byte, error) {
	var out []byte
	buf := make([]byte, 32*1024)
	for {
		n, err := f.ReadAt(buf, off)
		out = append(out, buf[:n]...)
		off += int64(n)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

func (s *SSH) WriteFile(ctx context.Context, p string, data []byte, perm fs.FileMode) error {
	return s.files(ctx, func(g *generation, c *sftp.Client) error {
		var suffix [8]byte
		_, _ = rand.Read(suffix[:])
		tmp := path.Join(path.Dir(p), "."+path.Base(p)+".tmp-"+hex.EncodeToString(suffix[:]))
		f, err := c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			return pathErr("open", tmp, err)
		}
		err = writeAndClose(g, f, data, perm)
		if err == nil {
			err = s.rename(g, c, tmp, p)
		}
		if err != nil {
			_ = c.Remove(tmp)
			return pathErr("write", p, err)
		}
		return nil
	})
}

func writeAndClose(g *generation, f *sftp.File, data []byte, perm fs.FileMode) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil && g.fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *SSH) rename(g *generation, c *sftp.Client, from, to string) error {
	if g.posixMove {
		return c.PosixRename(from, to)
	}
	return c.Rename(from, to)
}

func (s *SSH) Create(ctx context.Context, p string) (io.WriteCloser, error) {
	var f *sftp.File
	err := s.files(ctx, func(_ *generation, c *sftp.Client) (err error) {
		f, err = c.Create(p)
		if err == nil {
			// Private, as on the local host, whatever the SFTP server's umask.
			if err = f.Chmod(0o600); err != nil {
				_ = f.Close()
			}
		}
		return pathErr("open", p, err)
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (s *SSH) Open(ctx context.Context, p string) (io.ReadCloser, error) {
	var f *sftp.File
	err := s.files(ctx, func(_ *generation, c *sftp.Client) (err error) {
		f, err = c.Open(p)
		return pathErr("open", p, err)
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (s *SSH) Stat(ctx context.Context, p string) (fs.FileInfo, error) {
	var fi fs.FileInfo
	err := s.files(ctx, func(_ *generation, c *sftp.Client) (err error) {
		fi, err = c.Stat(p)
		return pathErr("stat", p, err)
	})
	return fi, err
}

func (s *SSH) ReadDir(ctx context.Context, p string) ([]fs.FileInfo, error) {
	var infos []fs.FileInfo
	err := s.files(ctx, func(_ *generation, c *sftp.Client) (err error) {
		infos, err = c.ReadDirContext(ctx, p)
		return pathErr("open", p, err)
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name() < infos[j].Name() })
	return infos, nil
}

func (s *SSH) MkdirAll(ctx context.Context, p string, perm fs.FileMode) error {
	return s.files(ctx, func(_ *generation, c *sftp.Client) error { return mkdirAll(c, p, perm) })
}

// mkdirAll makes p and its missing parents with mode perm; the common case, p exists, is one
// request.
func mkdirAll(c *sftp.Client, p string, perm fs.FileMode) error {
	fi, err := c.Stat(p)
	if err == nil {
		if fi.IsDir() {
			return nil
		}
		return &fs.PathError{Op: "mkdir", Path: p, Err: syscall.ENOTDIR}
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return pathErr("mkdir", p, err)
	}
	if parent := path.Dir(p); parent != p {
		if err := mkdirAll(c, parent, perm); err != nil {
			return err
		}
	}
	if err := c.Mkdir(p); err != nil {
		if fi, serr := c.Stat(p); serr == nil && fi.IsDir() {
			return nil // made by someone else meanwhile
		}
		return pathErr("mkdir", p, err)
	}
	return pathErr("chmod", p, c.Chmod(p, perm))
}

func (s *SSH) Remove(ctx context.Context, p string) error {
	// Not repeated on a new connection: a repeat would report a removed file as missing.
	return s.call(ctx, false, func(g *generation) error { return pathErr("remove", p, g.sftp.Remove(p)) })
}

func (s *SSH) RemoveAll(ctx context.Context, p string) error {
	// One command instead of a request per file: an unpacked image has thousands.
	_, err := s.Run(ctx, nil, "rm", "-rf", "--", p)
	return err
}

func (s *SSH) Rename(ctx context.Context, from, to string) error {
	return s.call(ctx, false, func(g *generation) error {
		if err := s.rename(g, g.sftp, from, to); err != nil {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: unwrapPathErr(err)}
		}
		return nil
	})
}

func (s *SSH) Symlink(ctx context.Context, target, link string) error {
	return s.call(ctx, false, func(g *generation) error {
		err := g.sftp.Symlink(target, link)
		if err == nil || g.lost(err) {
			return err
		}
		// SFTP v3 reports "failure" for an existing link; find out which failure it was.
		if _, lerr := g.sftp.Lstat(link); lerr == nil {
			return &os.LinkError{Op: "symlink", Old: target, New: link, Err: fs.ErrExist}
		}
		return &os.LinkError{Op: "symlink", Old: target, New: link, Err: unwrapPathErr(err)}
	})
}

func (s *SSH) Readlink(ctx context.Context, p string) (string, error) {
	var target string
	err := s.files(ctx, func(_ *generation, c *sftp.Client) (err error) {
		target, err = c.ReadLink(p)
		return pathErr("readlink", p, err)
	})
	return target, err
}

func (s *SSH) Truncate(ctx context.Context, p string, size int64) error {
	return s.files(ctx, func(_ *generation, c *sftp.Client) error {
		f, err := c.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return pathErr("open", p, err)
		}
		if err != nil { // it exists
			return pathErr("truncate", p, c.Truncate(p, size))
		}
		err = f.Chmod(0o600)
		if err == nil {
			err = f.Truncate(size)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return pathErr("truncate", p, err)
	})
}

// FreeSpace asks the SFTP server (OpenSSH's statvfs@openssh.com extension); a server without
// the extension is asked through df.
func (s *SSH) FreeSpace(ctx context.Context, p string) (int64, error) {
	var free int64
	unsupported := false
	err := s.files(ctx, func(_ *generation, c *sftp.Client) error {
		st, err := c.StatVFS(p)
		var status *sftp.StatusError
		if errors.As(err, &status) && status.FxCode() == sftp.ErrSSHFxOpUnsupported {
			unsupported = true
			return nil
		}
		if err != nil {
			return pathErr("statfs", p, err)
		}
		free = available(st.Bavail, st.Frsize, st.Bsize)
		return nil
	})
	if err != nil || !unsupported {
		return free, err
	}
	return s.dfAvailable(ctx, p)
}

// pathErr gives an SFTP error the shape of the os package's: a *fs.PathError naming the path, so
// errors.Is(err, fs.ErrNotExist) and the message read the same as on the local host.
func pathErr(op, p string, err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err
	}
	return &fs.PathError{Op: op, Path: p, Err: err}
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
