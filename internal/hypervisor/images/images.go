// Package images turns OCI image references into read-only erofs root filesystems, cached on the
// host by manifest digest:
//
//	{dir}/{digest}/rootfs.erofs   the flattened image (layers applied, whiteouts honoured)
//	{dir}/{digest}/image.json     ref, digest, entrypoint, cmd, env, workdir, size
//
// Images are fetched by the process that runs this code (from a registry, an OCI layout or a
// docker archive on this machine); everything written on the host goes through host.Host, so the
// host may be this machine or one reached over SSH.
package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"runtime"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
)

var (
	// ErrInvalidRef: the reference is not in one of the allowed forms.
	ErrInvalidRef = errors.New("invalid image reference")
	// ErrNotFound: no such image in the registry, the layout, the archive or the cache.
	ErrNotFound = errors.New("image not found")
	// ErrUnreachable: the registry could not be contacted.
	ErrUnreachable = errors.New("registry unreachable")
	// ErrPlatform: the image exists, but not for the platform VMs run on.
	ErrPlatform = errors.New("no image for this platform")
)

const (
	rootfsName = "rootfs.erofs"
	metaName   = "image.json"
	// aliasDir maps an index digest to the manifest digest chosen from it, so a ref pinned to an
	// index digest can be served from the cache without asking the registry.
	aliasDir = ".index"
)

// Image is a converted image in the cache.
type Image struct {
	Ref        string // the reference it was pulled by
	Digest     string // manifest digest, "sha256:…"
	Dir        string // {dir}/{digest} on the host
	Rootfs     string // {Dir}/rootfs.erofs on the host
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	Size       int64 // bytes of rootfs.erofs
}

// meta is image.json.
type meta struct {
	Ref        string   `json:"ref"`
	Digest     string   `json:"digest"`
	Entrypoint []string `json:"entrypoint"`
	Cmd        []string `json:"cmd"`
	Env        []string `json:"env"`
	WorkingDir string   `json:"workdir"`
	Size       int64    `json:"size"`
}

// Store is the image cache in one directory of one host.
type Store struct {
	host     host.Host
	dir      string
	keychain authn.Keychain
	platform v1.Platform

	// Log, when set, receives one line per step of a pull.
	Log func(ctx context.Context, msg string, fields map[string]any)

	// onConvert is called once per conversion; tests count conversions with it.
	onConvert func(digest string)
}

// NewStore returns the cache in dir ({data_dir}/images) on h. Registry credentials come from the
// docker config and credential helpers; images are chosen for linux on this architecture.
func NewStore(h host.Host, dir string) *Store {
	return &Store{
		host:     h,
		dir:      dir,
		keychain: authn.DefaultKeychain,
		platform: v1.Platform{OS: "linux", Architecture: runtime.GOARCH},
	}
}

// Dir is the cache directory on the host.
func (s *Store) Dir() string { return s.dir }

// Pull resolves ref, converts the image unless its digest is already cached, and returns it. A
// ref pinned to a digest that is cached is served without touching the network.
func (s *Store) Pull(ctx context.Context, ref string) (*Image, error) {
	cached, r, err := s.find(ctx, ref)
	if err != nil {
		return nil, err
	}
	if cached != nil {
		s.log(ctx, "image cached", map[string]any{"ref": ref, "digest": cached.Digest})
		cached.Ref = ref
		return cached, nil
	}
	s.log(ctx, "image resolved", map[string]any{"ref": ref, "digest": r.digest})
	img, err := s.ensure(ctx, ref, r)
	if err != nil {
		return nil, err
	}
	if r.indexDigest != "" {
		if err := s.writeAlias(ctx, r.indexDigest, img.Digest); err != nil {
			return nil, err
		}
	}
	img.Ref = ref
	return img, nil
}

// Lookup returns the cached image with this manifest digest; an image that is not (completely)
// cached is an error wrapping ErrNotFound.
func (s *Store) Lookup(ctx context.Context, digest string) (*Image, error) {
	if !digestPattern.MatchString(digest) {
		return nil, fmt.Errorf("%w: %q is not an image digest (want sha256: and 64 lower-case hex digits)", ErrNotFound, digest)
	}
	dir := path.Join(s.dir, digest)
	data, err := s.host.ReadFile(ctx, path.Join(dir, metaName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s is not cached in %s", ErrNotFound, digest, s.dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read image %s: %w", digest, err)
	}
	var m meta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("read image %s: %s: %w", digest, metaName, err)
	}
	rootfs := path.Join(dir, rootfsName)
	if _, err := s.host.Stat(ctx, rootfs); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s in %s has no %s", ErrNotFound, digest, s.dir, rootfsName)
	} else if err != nil {
		return nil, fmt.Errorf("read image %s: %w", digest, err)
	}
	return &Image{
		Ref: m.Ref, Digest: m.Digest, Dir: dir, Rootfs: rootfs,
		Entrypoint: m.Entrypoint, Cmd: m.Cmd, Env: m.Env, WorkingDir: m.WorkingDir, Size: m.Size,
	}, nil
}

var digestPattern = regexp.MustCompile(`^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$`)

// cachedByPin finds a pinned digest in the cache, whether it names a manifest or an index.
func (s *Store) cachedByPin(ctx context.Context, digest string) (*Image, error) {
	img, err := s.Lookup(ctx, digest)
	if !errors.Is(err, ErrNotFound) {
		return img, err
	}
	target, aerr := s.host.ReadFile(ctx, s.aliasPath(digest))
	if errors.Is(aerr, fs.ErrNotExist) {
		return nil, err
	}
	if aerr != nil {
		return nil, fmt.Errorf("read index alias for %s: %w", digest, aerr)
	}
	return s.Lookup(ctx, string(target))
}

func (s *Store) aliasPath(indexDigest string) string {
	p := s.platform.OS + "-" + s.platform.Architecture
	if s.platform.Variant != "" {
		p += "-" + s.platform.Variant
	}
	return path.Join(s.dir, aliasDir, indexDigest+"-"+p)
}

func (s *Store) writeAlias(ctx context.Context, indexDigest, digest string) error {
	if err := s.host.MkdirAll(ctx, path.Join(s.dir, aliasDir), 0o755); err != nil {
		return fmt.Errorf("record index %s: %w", indexDigest, err)
	}
	if err := s.host.WriteFile(ctx, s.aliasPath(indexDigest), []byte(digest), 0o644); err != nil {
		return fmt.Errorf("record index %s: %w", indexDigest, err)
	}
	return nil
}

func (s *Store) log(ctx context.Context, msg string, fields map[string]any) {
	if s.Log != nil {
		s.Log(ctx, msg, fields)
	}
}
