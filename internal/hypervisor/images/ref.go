package images

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Allowed describes the accepted reference forms, for error messages.
const Allowed = `a registry reference (alpine, docker.io/library/alpine:3.20, ` +
	`registry.example.com:5000/app@sha256:<64 hex digits>), oci:PATH[:TAG] (an OCI image-layout directory) ` +
	`or docker-archive:PATH (a "docker save" tarball)`

const (
	ociPrefix           = "oci:"
	dockerArchivePrefix = "docker-archive:"
)

// Transports that other tools accept and this store does not; without this check some of them
// would parse as a registry repository named after the transport.
var unsupportedTransports = []string{
	"docker://", "oci-archive:", "docker-daemon:", "containers-storage:", "dir:", "ostree:", "sif:",
}

// A tag as the distribution spec defines it.
var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// sourceKind says where an image comes from.
type sourceKind int

const (
	fromRegistry sourceKind = iota
	fromOCILayout
	fromDockerArchive
)

// source is a parsed image reference.
type source struct {
	kind sourceKind
	ref  name.Reference // fromRegistry
	path string         // fromOCILayout, fromDockerArchive: a path on the machine running this code
	tag  string         // fromOCILayout: "" selects the only image or the one tagged latest
}

// pinnedDigest is the digest a registry reference names, or "" when it names a tag.
func (s source) pinnedDigest() string {
	if d, ok := s.ref.(name.Digest); ok {
		return d.DigestStr()
	}
	return ""
}

// ValidateRef checks the syntax of an image reference without touching the network or the disk.
func ValidateRef(ref string) error {
	_, err := parseRef(ref)
	return err
}

func parseRef(ref string) (source, error) {
	invalid := func(why string) (source, error) {
		return source{}, fmt.Errorf("%w %q: %s; use %s", ErrInvalidRef, ref, why, Allowed)
	}
	if ref == "" {
		return invalid("it is empty")
	}
	if strings.TrimSpace(ref) != ref {
		return invalid("it has leading or trailing white space")
	}
	switch {
	case strings.HasPrefix(ref, ociPrefix):
		path, tag := splitLayoutTag(strings.TrimPrefix(ref, ociPrefix))
		if path == "" {
			return invalid("the OCI layout path is empty")
		}
		return source{kind: fromOCILayout, path: path, tag: tag}, nil
	case strings.HasPrefix(ref, dockerArchivePrefix):
		path := strings.TrimPrefix(ref, dockerArchivePrefix)
		if path == "" {
			return invalid("the docker archive path is empty")
		}
		return source{kind: fromDockerArchive, path: path}, nil
	}
	for _, t := range unsupportedTransports {
		if strings.HasPrefix(ref, t) {
			return invalid(fmt.Sprintf("the %q transport is not supported", strings.TrimRight(t, ":/")))
		}
	}
	// ParseReference's own error only says "could not parse"; the specific parser says why.
	var r name.Reference
	var err error
	if strings.Contains(ref, "@") {
		r, err = name.NewDigest(ref)
	} else {
		r, err = name.NewTag(ref)
	}
	if err != nil {
		return invalid(err.Error())
	}
	return source{kind: fromRegistry, ref: r}, nil
}

// splitLayoutTag splits "PATH[:TAG]" at the last colon when what follows is a tag, so a path may
// itself contain colons (but then needs an explicit tag if its last element looks like one).
func splitLayoutTag(s string) (path, tag string) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || !tagPattern.MatchString(s[i+1:]) {
		return s, ""
	}
	return s[:i], s[i+1:]
}
