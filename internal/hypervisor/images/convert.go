package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// ensure returns the cached image for r, converting it first if no one has. The per-digest lock on
// the host makes concurrent pulls, in this process or another, convert it once.
func (s *Store) ensure(ctx context.Context, ref string, r resolved) (*Image, error) {
	if err := s.host.MkdirAll(ctx, s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("image cache %s: %w", s.dir, err)
	}
	unlock, err := s.host.Lock(ctx, path.Join(s.dir, ".lock-"+r.digest))
	if err != nil {
		return nil, fmt.Errorf("image %q: wait for the cache lock: %w", ref, err)
	}
	defer unlock()

	img, err := s.Lookup(ctx, r.digest)
	if err == nil {
		s.log(ctx, "image cached", map[string]any{"ref": ref, "digest": r.digest})
		return img, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err := s.convert(ctx, ref, r); err != nil {
		return nil, fmt.Errorf("image %q (%s): %w", ref, r.digest, err)
	}
	return s.Lookup(ctx, r.digest)
}

// convert writes {dir}/{digest} through a temporary directory that is renamed into place only when
// complete. The caller holds the digest's lock.
func (s *Store) convert(ctx context.Context, ref string, r resolved) (err error) {
	if s.onConvert != nil {
		s.onConvert(r.digest)
	}
	tmp := path.Join(s.dir, ".tmp-"+r.digest)
	final := path.Join(s.dir, r.digest)
	root := path.Join(tmp, "rootfs")
	// A leftover is from a conversion that died: nobody else holds the lock.
	if err := s.host.RemoveAll(ctx, tmp); err != nil {
		return fmt.Errorf("remove stale %s: %w", tmp, err)
	}
	defer func() {
		if err != nil {
			_ = s.host.RemoveAll(context.WithoutCancel(ctx), tmp)
		}
	}()
	if err := s.host.MkdirAll(ctx, root, 0o755); err != nil {
		return err
	}

	s.log(ctx, "image extract", map[string]any{"ref": ref, "digest": r.digest, "dir": root})
	if err := s.extract(ctx, r, root); err != nil {
		return err
	}
	rootfs := path.Join(tmp, rootfsName)
	s.log(ctx, "image mkfs.erofs", map[string]any{"ref": ref, "digest": r.digest, "file": rootfs})
	// Uncompressed: the guest reads it under emulation, where decompression costs more than the disk.
	if _, err := s.host.Run(ctx, nil, "mkfs.erofs", "--quiet", "--preserve-mtime", rootfs, root); err != nil {
		return fmt.Errorf("make erofs: %w", err)
	}
	if err := s.host.RemoveAll(ctx, root); err != nil {
		return fmt.Errorf("remove extracted tree: %w", err)
	}
	fi, err := s.host.Stat(ctx, rootfs)
	if err != nil {
		return err
	}
	cf, err := r.img.ConfigFile()
	if err != nil {
		return fmt.Errorf("read image config: %w", err)
	}
	data, err := json.MarshalIndent(meta{
		Ref: ref, Digest: r.digest,
		Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd, Env: cf.Config.Env, WorkingDir: cf.Config.WorkingDir,
		Size: fi.Size(),
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := s.host.WriteFile(ctx, path.Join(tmp, metaName), data, 0o644); err != nil {
		return err
	}
	// Lookup found no complete image, so anything at final is a partial leftover.
	if err := s.host.RemoveAll(ctx, final); err != nil {
		return fmt.Errorf("remove incomplete %s: %w", final, err)
	}
	if err := s.host.Rename(ctx, tmp, final); err != nil {
		return fmt.Errorf("publish %s: %w", final, err)
	}
	s.log(ctx, "image converted", map[string]any{"ref": ref, "digest": r.digest, "bytes": fi.Size()})
	return nil
}

var errTarStopped = errors.New("tar stopped reading")

// extract streams the flattened image (whiteouts applied) into tar on the host.
func (s *Store) extract(ctx context.Context, r resolved, dir string) error {
	pr, pw := io.Pipe()
	produced := make(chan error, 1)
	go func() {
		rc := mutate.Extract(r.img)
		_, err := io.Copy(pw, rc)
		_ = rc.Close()
		pw.CloseWithError(err)
		produced <- err
	}()
	// GNU tar keeps members inside dir: it strips leading "/", skips "..", and defers symlinks
	// that point outside until the end, so no later member is written through one.
	_, runErr := s.host.Run(ctx, pr, "tar", "--extract", "--file=-", "--directory="+dir,
		"--numeric-owner", "--same-owner", "--same-permissions", "--xattrs", "--xattrs-include=*")
	// Unblocks the producer if tar stopped reading early.
	pr.CloseWithError(errTarStopped)
	// The producer's error is the cause when both fail: tar only saw its input end.
	if err := <-produced; err != nil && !errors.Is(err, errTarStopped) {
		return fmt.Errorf("read image layers: %w", err)
	}
	if runErr != nil {
		return fmt.Errorf("extract layers: %w", runErr)
	}
	return nil
}
