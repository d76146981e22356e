// Package ociimage builds small OCI images around a static busybox, in memory and reproducibly,
// and writes them as OCI image layouts: the images the tests pull and `make demo` boots.
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BusyboxPath is where Debian's busybox-static installs the static binary the images are built from.
const BusyboxPath = "/bin/busybox"

// BusyboxApplets are the names linked to busybox in /bin of the image.
var BusyboxApplets = []string{
	"sh", "ls", "cat", "echo", "env", "sleep", "pwd", "sync", "mkdir", "touch", "test", "[", "printf",
	"rm", "cp", "mv", "ln", "id", "stat", "hostname", "uname", "true", "false", "grep", "sed", "head",
	"tail", "wc", "chmod", "chown", "dd", "df", "du", "find", "mount", "umount", "ps", "kill", "date",
	"tr", "cut", "sort", "xargs", "md5sum", "sha256sum", "poweroff",
}

// Paths whose contents the image's layers define, for tests that check the flattened result.
const (
	// RemovedPath is added by layer 2 and deleted by a whiteout in layer 3.
	RemovedPath = "/etc/removed-me"
	// HelloPath is added by layer 2, owned by HelloUID:HelloUID with mode 0640.
	HelloPath    = "/opt/app/hello.txt"
	HelloContent = "hello from layer 2\n"
	HelloUID     = 1000
)

// DefaultPath is the PATH the image's config sets.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Options changes the image. Zero values keep the defaults: Cmd ["/bin/sh"] (when
// Entrypoint is also unset), Env [DefaultPath], WorkingDir "/", this machine's architecture.
type Options struct {
	Entrypoint   []string
	Cmd          []string
	Env          []string
	WorkingDir   string
	Architecture string
	// Files go into one more layer on top.
	Files []File
}

// File is one regular file of an extra layer; Mode 0 means 0644.
type File struct {
	Path string
	Data []byte
	Mode int64
}

// Fixed so that the same options always build the same digest.
var layerTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Busybox builds a small linux image around a static busybox: layer 1 is busybox, its
// applet links and the usual top-level directories; layer 2 adds /etc files, RemovedPath and
// HelloPath; layer 3 whites out RemovedPath; opts.Files, if any, form layer 4.
func Busybox(busyboxPath string, opts Options) (v1.Image, error) {
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, fmt.Errorf("read busybox: %w", err)
	}
	var l1 []entry
	for _, d := range []struct {
		name string
		mode int64
	}{{"bin", 0o755}, {"dev", 0o755}, {"etc", 0o755}, {"proc", 0o555}, {"root", 0o700}, {"sys", 0o555}, {"tmp", 0o1777}, {"work", 0o755}} {
		l1 = append(l1, entry{hdr: dirHeader(d.name, d.mode)})
	}
	l1 = append(l1, entry{hdr: fileHeader("bin/busybox", 0o755, int64(len(bb))), data: bb})
	for _, a := range BusyboxApplets {
		l1 = append(l1, entry{hdr: &tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: layerTime}})
	}
	text := func(p string, mode int64, s string) entry {
		return entry{hdr: fileHeader(p, mode, int64(len(s))), data: []byte(s)}
	}
	hello := text(strings.TrimPrefix(HelloPath, "/"), 0o640, HelloContent)
	hello.hdr.Uid, hello.hdr.Gid = HelloUID, HelloUID
	l2 := []entry{
		text("etc/hostname", 0o644, "busybox\n"),
		text("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/opt/app:/bin/sh\n"),
		text("etc/group", 0o644, "root:x:0:\napp:x:1000:\n"),
		text(strings.TrimPrefix(RemovedPath, "/"), 0o644, "a lower layer wrote this; an upper one removes it\n"),
		{hdr: dirHeader("opt", 0o755)},
		{hdr: dirHeader("opt/app", 0o755)},
		hello,
	}
	l3 := []entry{text(path.Join(path.Dir(RemovedPath[1:]), ".wh."+path.Base(RemovedPath)), 0o644, "")}

	layers := [][]entry{l1, l2, l3}
	if len(opts.Files) > 0 {
		var l4 []entry
		for _, f := range opts.Files {
			mode := f.Mode
			if mode == 0 {
				mode = 0o644
			}
			l4 = append(l4, entry{hdr: fileHeader(strings.TrimPrefix(f.Path, "/"), mode, int64(len(f.Data))), data: f.Data})
		}
		layers = append(layers, l4)
	}

	cfg := v1.Config{Entrypoint: opts.Entrypoint, Cmd: opts.Cmd, Env: opts.Env, WorkingDir: opts.WorkingDir}
	if cfg.Cmd == nil && cfg.Entrypoint == nil {
		cfg.Cmd = []string{"/bin/sh"}
	}
	if cfg.Env == nil {
		cfg.Env = []string{DefaultPath}
	}
	if cfg.WorkingDir == "" {
		cfg.WorkingDir = "/"
	}
	arch := opts.Architecture
	if arch == "" {
		arch = runtime.GOARCH
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		OS: "linux", Architecture: arch, Created: v1.Time{Time: layerTime}, Config: cfg,
	})
	if err != nil {
		return nil, err
	}
	for i, entries := range layers {
		l, err := tarLayer(entries)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i+1, err)
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{
			Created: v1.Time{Time: layerTime}, CreatedBy: fmt.Sprintf("test layer %d", i+1),
		}}); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// Index makes a multi-platform index of imgs, each described by the platform in its config.
func Index(imgs ...v1.Image) (v1.ImageIndex, error) {
	var adds []mutate.IndexAddendum
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: cf.Platform()}})
	}
	return mutate.AppendManifests(empty.Index, adds...), nil
}

// WriteLayout adds img to the OCI image layout in dir, creating the layout if needed, and
// tags it with the org.opencontainers.image.ref.name annotation unless tag is empty.
func WriteLayout(dir string, img v1.Image, tag string) error {
	lp, err := layout.FromPath(dir)
	if err != nil {
		if lp, err = layout.Write(dir, empty.Index); err != nil {
			return fmt.Errorf("create OCI layout %s: %w", dir, err)
		}
	}
	var opts []layout.Option
	if tag != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag}))
	}
	if err := lp.AppendImage(img, opts...); err != nil {
		return fmt.Errorf("write image to OCI layout %s: %w", dir, err)
	}
	return nil
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

func dirHeader(name string, mode int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: layerTime}
}

func fileHeader(name string, mode, size int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: size, ModTime: layerTime}
}

func tarLayer(entries []entry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tw.WriteHeader(e.hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}
