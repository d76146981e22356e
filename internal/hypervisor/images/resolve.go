package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// resolved is one image, chosen for the store's platform, whose layers are read on demand.
type resolved struct {
	img         v1.Image
	digest      string // manifest digest
	indexDigest string // the index it was chosen from, when the ref named an index
}

// Resolve returns the manifest digest that Pull would give ref, without pulling it: a pinned
// digest that is cached is answered from the cache; otherwise the registry's manifest, or the
// layout's or the archive's, is read as Pull reads it (a docker archive's digest is computed from
// its layers, as a pull does).
func (s *Store) Resolve(ctx context.Context, ref string) (string, error) {
	img, r, err := s.find(ctx, ref)
	switch {
	case err != nil:
		return "", err
	case img != nil:
		return img.Digest, nil
	}
	return r.digest, nil
}

// Check finds what a pull of an image on this machine (oci:, docker-archive:) would fail at,
// without reading its layers: a path that does not exist, a layout or an archive that does not
// hold the image, an image for another platform. A registry reference passes unchecked: only the
// network can tell.
func (s *Store) Check(ctx context.Context, ref string) error {
	src, err := parseRef(ref)
	if err != nil || src.kind == fromRegistry {
		return err
	}
	_, err = s.locate(ctx, ref, src)
	return err
}

// find is what Pull does before it converts: the cached image a pinned ref names, or else the
// image ref resolves to.
func (s *Store) find(ctx context.Context, ref string) (*Image, resolved, error) {
	src, err := parseRef(ref)
	if err != nil {
		return nil, resolved{}, err
	}
	if d := src.pinnedDigest(); d != "" {
		img, err := s.cachedByPin(ctx, d)
		if err == nil {
			return img, resolved{}, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, resolved{}, err
		}
	}
	r, err := s.resolve(ctx, ref, src)
	return nil, r, err
}

func (s *Store) resolve(ctx context.Context, ref string, src source) (resolved, error) {
	r, err := s.locate(ctx, ref, src)
	if err != nil {
		return resolved{}, err
	}
	h, err := r.img.Digest()
	if err != nil {
		return resolved{}, fmt.Errorf("image %q: manifest digest: %w", ref, err)
	}
	r.digest = h.String()
	return r, nil
}

// locate finds the image ref names, for the store's platform, reading no layer.
func (s *Store) locate(ctx context.Context, ref string, src source) (resolved, error) {
	var (
		r   resolved
		err error
	)
	switch src.kind {
	case fromOCILayout:
		r, err = s.resolveLayout(src)
	case fromDockerArchive:
		r, err = s.resolveArchive(src)
	default:
		r, err = s.resolveRemote(ctx, src.ref)
	}
	if err != nil {
		return resolved{}, fmt.Errorf("image %q: %w", ref, err)
	}
	return r, nil
}

func (s *Store) resolveRemote(ctx context.Context, ref name.Reference) (resolved, error) {
	desc, err := remote.Get(ref, remote.WithContext(ctx), remote.WithAuthFromKeychain(s.keychain))
	if err != nil {
		return resolved{}, registryError(ref, err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return resolved{}, registryError(ref, err)
		}
		img, err := s.fromIndex(idx)
		if err != nil {
			return resolved{}, registryError(ref, err)
		}
		return resolved{img: img, indexDigest: desc.Digest.String()}, nil
	}
	img, err := desc.Image()
	if err != nil {
		return resolved{}, registryError(ref, err)
	}
	if err := s.checkPlatform(img); err != nil {
		return resolved{}, err
	}
	return resolved{img: img}, nil
}

// registryError says which of the usual failures happened, keeping the cause.
func registryError(ref name.Reference, err error) error {
	reg := ref.Context().RegistryStr()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrPlatform) {
		return err
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch {
		case terr.StatusCode == http.StatusNotFound || hasCode(terr, transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode):
			return fmt.Errorf("%w: %s has no manifest %q: %w", ErrNotFound, ref.Context().Name(), ref.Identifier(), err)
		case terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden:
			return fmt.Errorf("registry %s denied access to %s (credentials come from the docker config and its credential helpers): %w",
				reg, ref.Context().RepositoryStr(), err)
		}
		return fmt.Errorf("registry %s: %w", reg, err)
	}
	var nerr net.Error
	if errors.As(err, &nerr) {
		return fmt.Errorf("%w: cannot reach %s: %w", ErrUnreachable, reg, err)
	}
	return fmt.Errorf("registry %s: %w", reg, err)
}

func hasCode(terr *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range terr.Errors {
		if slices.Contains(codes, d.Code) {
			return true
		}
	}
	return false
}

// indexer is what an index from a registry and one from a layout have in common.
type indexer interface {
	IndexManifest() (*v1.IndexManifest, error)
	Image(v1.Hash) (v1.Image, error)
	ImageIndex(v1.Hash) (v1.ImageIndex, error)
}

// fromIndex picks the image for the store's platform, descending into nested indexes.
func (s *Store) fromIndex(idx indexer) (v1.Image, error) {
	var seen []string
	img, err := s.searchIndex(idx, &seen)
	if err != nil || img != nil {
		return img, err
	}
	sort.Strings(seen)
	return nil, fmt.Errorf("%w: the index has images for %s, none for %s",
		ErrPlatform, strings.Join(slices.Compact(seen), ", "), platformString(s.platform))
}

func (s *Store) searchIndex(idx indexer, seen *[]string) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			if img, err := s.searchIndex(child, seen); err != nil || img != nil {
				return img, err
			}
		case d.MediaType.IsImage():
			if d.Platform == nil {
				// Without a platform in the index only the image's config can tell.
				img, err := idx.Image(d.Digest)
				if err != nil {
					return nil, err
				}
				cf, err := img.ConfigFile()
				if err != nil {
					return nil, err
				}
				p := cf.Platform()
				if p == nil || s.matches(*p) {
					return img, nil
				}
				*seen = append(*seen, platformString(*p))
				continue
			}
			if d.Platform.OS == "unknown" {
				continue // attestations and signatures
			}
			if s.matches(*d.Platform) {
				return idx.Image(d.Digest)
			}
			*seen = append(*seen, platformString(*d.Platform))
		}
	}
	return nil, nil
}

// checkPlatform refuses a single-platform image built for another platform; an image whose
// config names no platform is accepted.
func (s *Store) checkPlatform(img v1.Image) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("read image config: %w", err)
	}
	if p := cf.Platform(); p != nil && !s.matches(*p) {
		return fmt.Errorf("%w: the image is for %s only, VMs here need %s",
			ErrPlatform, platformString(*p), platformString(s.platform))
	}
	return nil
}

func (s *Store) matches(p v1.Platform) bool {
	if p.OS != "" && p.OS != s.platform.OS || p.Architecture != "" && p.Architecture != s.platform.Architecture {
		return false
	}
	return s.platform.Variant == "" || p.Variant == "" || p.Variant == s.platform.Variant
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func (s *Store) resolveLayout(src source) (resolved, error) {
	if err := checkPath("OCI layout", src.path, true); err != nil {
		return resolved{}, err
	}
	lp, err := layout.FromPath(src.path)
	if errors.Is(err, fs.ErrNotExist) {
		return resolved{}, fmt.Errorf("%w: %s is not an OCI image layout (it has no index.json)", ErrNotFound, src.path)
	}
	if err != nil {
		return resolved{}, fmt.Errorf("OCI layout %s: %w", src.path, err)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return resolved{}, fmt.Errorf("OCI layout %s: %w", src.path, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return resolved{}, fmt.Errorf("OCI layout %s: %w", src.path, err)
	}
	d, err := pickTagged(im.Manifests, src.tag)
	if err != nil {
		return resolved{}, fmt.Errorf("OCI layout %s: %w", src.path, err)
	}
	if d.MediaType.IsIndex() {
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return resolved{}, fmt.Errorf("OCI layout %s: %w", src.path, err)
		}
		img, err := s.fromIndex(child)
		if err != nil {
			return resolved{}, fmt.Errorf("OCI layout %s: %w", src.path, err)
		}
		return resolved{img: img, indexDigest: d.Digest.String()}, nil
	}
	img, err := idx.Image(d.Digest)
	if err != nil {
		return resolved{}, fmt.Errorf("OCI layout %s: %w", src.path, err)
	}
	if err := s.checkPlatform(img); err != nil {
		return resolved{}, fmt.Errorf("OCI layout %s: %w", src.path, err)
	}
	return resolved{img: img}, nil
}

// pickTagged chooses the layout entry for tag; without a tag, the only entry or the one tagged
// "latest".
func pickTagged(manifests []v1.Descriptor, tag string) (v1.Descriptor, error) {
	var tags []string
	var found []v1.Descriptor
	for _, d := range manifests {
		if !d.MediaType.IsImage() && !d.MediaType.IsIndex() {
			continue
		}
		t := d.Annotations[refNameAnnotation]
		if t != "" {
			tags = append(tags, t)
		}
		if tag == "" && len(manifests) == 1 || tagMatches(t, orLatest(tag)) {
			found = append(found, d)
		}
	}
	sort.Strings(tags)
	listed := "none"
	if len(tags) > 0 {
		listed = strings.Join(tags, ", ")
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		return v1.Descriptor{}, fmt.Errorf("%d images are tagged %q; tags: %s", len(found), orLatest(tag), listed)
	case len(manifests) == 0:
		return v1.Descriptor{}, fmt.Errorf("%w: the layout holds no image", ErrNotFound)
	case tag == "":
		return v1.Descriptor{}, fmt.Errorf("the layout holds %d images and none is tagged \"latest\"; name one as oci:PATH:TAG (tags: %s)",
			len(manifests), listed)
	}
	return v1.Descriptor{}, fmt.Errorf("%w: no image tagged %q (tags: %s)", ErrNotFound, tag, listed)
}

func orLatest(tag string) string {
	if tag == "" {
		return "latest"
	}
	return tag
}

// refNameAnnotation tags an entry of an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// tagMatches accepts a bare tag and a full reference ending in it, since tools write either.
func tagMatches(annotation, tag string) bool {
	return annotation == tag || strings.HasSuffix(annotation, ":"+tag)
}

func (s *Store) resolveArchive(src source) (resolved, error) {
	if err := checkPath("docker archive", src.path, false); err != nil {
		return resolved{}, err
	}
	opener := func() (io.ReadCloser, error) { return os.Open(src.path) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return resolved{}, fmt.Errorf("docker archive %s is not a \"docker save\" tarball: %w", src.path, err)
	}
	if len(m) != 1 {
		var tags []string
		for _, d := range m {
			tags = append(tags, d.RepoTags...)
		}
		return resolved{}, fmt.Errorf("docker archive %s holds %d images (tags: %s); save exactly one",
			src.path, len(m), strings.Join(tags, ", "))
	}
	img, err := tarball.Image(opener, nil)
	if err != nil {
		return resolved{}, fmt.Errorf("docker archive %s: %w", src.path, err)
	}
	if err := s.checkPlatform(img); err != nil {
		return resolved{}, fmt.Errorf("docker archive %s: %w", src.path, err)
	}
	return resolved{img: img}, nil
}

// checkPath turns a missing path into ErrNotFound and a path of the wrong kind into a clear error.
func checkPath(kind, p string, wantDir bool) error {
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		abs, _ := filepath.Abs(p)
		return fmt.Errorf("%w: %s %s does not exist", ErrNotFound, kind, abs)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", kind, p, err)
	}
	if fi.IsDir() != wantDir {
		if wantDir {
			return fmt.Errorf("%s %s is a file; an OCI layout is a directory", kind, p)
		}
		return fmt.Errorf("%s %s is a directory; a docker archive is a tarball file", kind, p)
	}
	return nil
}
