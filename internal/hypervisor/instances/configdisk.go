package instances

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/images"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
)

// guestProgram is what the guest init runs: argv, environment and working directory, with the
// image's defaults applied where the instance does not override them.
type guestProgram struct {
	Argv    []string
	Env     []string // KEY=VALUE, sorted by key
	Workdir string
}

// resolveProgram applies Docker's rules: an instance entrypoint replaces the image's and clears
// the image's cmd; an instance cmd replaces the image's cmd; instance env is merged over the
// image's env; an empty workdir means the image's, and "/" when the image has none.
func resolveProgram(spec Spec, img *images.Image) (guestProgram, error) {
	entrypoint, cmd := img.Entrypoint, img.Cmd
	if spec.Entrypoint != nil {
		entrypoint, cmd = spec.Entrypoint, nil
	}
	if spec.Cmd != nil {
		cmd = spec.Cmd
	}
	argv := append(append([]string{}, entrypoint...), cmd...)
	if len(argv) == 0 || argv[0] == "" {
		return guestProgram{}, &FieldError{Field: "entrypoint", Value: "", Allowed: "a program to run: the image " + img.Ref + " sets neither entrypoint nor cmd, so the instance must"}
	}
	env := map[string]string{}
	for _, kv := range img.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for k, v := range spec.Env {
		env[k] = v
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	prog := guestProgram{Argv: argv, Workdir: spec.Workdir}
	for _, k := range keys {
		prog.Env = append(prog.Env, k+"="+env[k])
	}
	if prog.Workdir == "" {
		prog.Workdir = img.WorkingDir
	}
	if prog.Workdir == "" {
		prog.Workdir = "/"
	}
	return prog, nil
}

// guestVolume is one attached volume as the guest init mounts it (system.ConfigVolumesDir).
type guestVolume struct {
	Serial   string
	Path     string
	ReadOnly bool
}

// configTar lays out the config disk of the guest boot contract (system/contract.go): one file per
// argv item, per env entry and per volume setting, holding the raw bytes.
func configTar(prog guestProgram, hostname string, gnet *guestNetwork, vols []guestVolume) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755})
	}
	file := func(name, content string) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))}); err != nil {
			return err
		}
		_, err := tw.Write([]byte(content))
		return err
	}
	steps := []error{dir(system.ConfigArgvDir), dir(system.ConfigEnvDir)}
	for i, a := range prog.Argv {
		steps = append(steps, file(path.Join(system.ConfigArgvDir, fmt.Sprintf("%04d", i)), a))
	}
	for i, kv := range prog.Env {
		steps = append(steps, file(path.Join(system.ConfigEnvDir, fmt.Sprintf("%04d", i)), kv))
	}
	steps = append(steps, file(system.ConfigWorkdir, prog.Workdir), file(system.ConfigHostname, hostname))
	if gnet != nil {
		var dns strings.Builder
		for _, d := range gnet.DNS {
			dns.WriteString(d + "\n")
		}
		steps = append(steps, dir(system.ConfigNetDir), file(system.ConfigNetAddress, gnet.Address),
			file(system.ConfigNetGateway, gnet.Gateway), file(system.ConfigNetDNS, dns.String()), file(system.ConfigNetMAC, gnet.MAC))
	}
	if len(vols) > 0 {
		steps = append(steps, dir(system.ConfigVolumesDir))
	}
	for i, v := range vols {
		// The guest mounts them in this order.
		d := path.Join(system.ConfigVolumesDir, fmt.Sprintf("%04d", i))
		steps = append(steps, dir(d), file(path.Join(d, system.ConfigVolumeSerial), v.Serial), file(path.Join(d, system.ConfigVolumePath), v.Path))
		if v.ReadOnly {
			steps = append(steps, file(path.Join(d, system.ConfigVolumeReadOnly), ""))
		}
	}
	steps = append(steps, tw.Close())
	for _, err := range steps {
		if err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

const configDiskMin = 1 << 20

// writeConfigDisk builds config.erofs for the instance on the host: the tar is unpacked into a
// scratch directory there (one round trip, also over SSH) and mkfs.erofs packs it.
func (m *Manager) writeConfigDisk(ctx context.Context, id string, prog guestProgram, hostname string, gnet *guestNetwork, vols []guestVolume) error {
	content, err := configTar(prog, hostname, gnet, vols)
	if err != nil {
		return err
	}
	scratch := path.Join(m.layout.dir(id), ".config.d")
	target := m.layout.config(id)
	_ = m.host.RemoveAll(ctx, scratch)
	defer func() { _ = m.host.RemoveAll(context.WithoutCancel(ctx), scratch) }()
	if err := m.host.MkdirAll(ctx, scratch, 0o700); err != nil {
		return err
	}
	if _, err := m.host.Run(ctx, bytes.NewReader(content), "tar", "-x", "-C", scratch, "--no-same-owner"); err != nil {
		return fmt.Errorf("unpack the config disk: %w", err)
	}
	if _, err := m.host.Run(ctx, nil, "mkfs.erofs", "--quiet", "--all-root", target+".tmp", scratch); err != nil {
		return fmt.Errorf("make the config disk: %w", err)
	}
	// A disk of a few KiB makes the guest kernel probe past its end for partition tables; a sparse
	// 1 MiB file keeps the console quiet and costs nothing.
	if fi, err := m.host.Stat(ctx, target+".tmp"); err == nil && fi.Size() < configDiskMin {
		if err := m.host.Truncate(ctx, target+".tmp", configDiskMin); err != nil {
			return err
		}
	}
	// It holds env values: private, whatever umask mkfs.erofs ran under.
	if _, err := m.host.Run(ctx, nil, "chmod", "0600", "--", target+".tmp"); err != nil {
		return err
	}
	return m.host.Rename(ctx, target+".tmp", target)
}
