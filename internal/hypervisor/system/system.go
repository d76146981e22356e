// Package system prepares what every guest boots: a PVH vmlinux and an initrd holding busybox,
// the guest init and the kernel modules it needs. Both are built once per set of inputs and
// cached on the host by content hash.
package system

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
)

// BaseCmdline is the kernel command line every VMM passes; drivers may append to it. panic=-1
// reboots at once on a panic, which ends a VMM started without reboots; quiet keeps the console
// for the program (the init's markers are not kernel messages); hot-added memory comes online
// by itself so that growing a guest needs nothing from inside it.
const BaseCmdline = "console=ttyS0 panic=-1 rdinit=/init quiet memhp_default_state=online_movable"

// DefaultBusybox is the busybox used when Config.Busybox is empty.
const DefaultBusybox = "/bin/busybox"

// Config names the inputs on the host.
type Config struct {
	Kernel   string // path on the host: an ELF vmlinux with a PVH note, or a bzImage
	Modules  string // lib/modules/RELEASE on the host; "" when everything needed is built in
	Busybox  string // static busybox on the host; "" = /bin/busybox
	CacheDir string // {data_dir}/system on the host
}

// Artifacts are the prepared files, ready to boot.
type Artifacts struct {
	Kernel        string `json:"kernel"`      // path in CacheDir, named by content hash
	Initrd        string `json:"initrd"`      // path in CacheDir, named by content hash
	KernelHash    string `json:"kernel_hash"` // hex sha256 of the vmlinux
	InitrdHash    string `json:"initrd_hash"` // hex sha256 of the initrd
	KernelRelease string `json:"kernel_release"`
}

// cacheVersion changes whenever the builder would produce different artifacts from the same
// files for a reason the index key does not already cover (the init, the module list), so that
// an old index entry is not trusted.
const cacheVersion = 1

// indexEntry records, per configuration, the artifacts and the input files they were built
// from as they were then (size and modification time). A warm Prepare only stats the inputs
// instead of reading and hashing tens of megabytes.
type indexEntry struct {
	Version   int          `json:"version"`
	Inputs    []inputStamp `json:"inputs"`
	Artifacts Artifacts    `json:"artifacts"`
	Sizes     [2]int64     `json:"sizes"` // of Artifacts.Kernel and Artifacts.Initrd
}

type inputStamp struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
}

func stampOf(p string, fi fs.FileInfo) inputStamp {
	return inputStamp{Path: p, Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
}

// Prepare returns the vmlinux and initrd for cfg, building them when an input changed since the
// last build. Concurrent calls, in this process or others, build once.
func Prepare(ctx context.Context, h host.Host, cfg Config) (*Artifacts, error) {
	if cfg.Busybox == "" {
		cfg.Busybox = DefaultBusybox
	}
	if cfg.Kernel == "" || cfg.CacheDir == "" {
		return nil, fmt.Errorf("system: kernel %q and cache dir %q must both be set", cfg.Kernel, cfg.CacheDir)
	}
	indexPath := path.Join(cfg.CacheDir, "index", cfg.key()+".json")
	if a, ok := cached(ctx, h, indexPath); ok {
		return a, nil
	}
	if err := h.MkdirAll(ctx, path.Dir(indexPath), 0o755); err != nil {
		return nil, fmt.Errorf("system: create cache dir: %w", err)
	}
	unlock, err := h.Lock(ctx, strings.TrimSuffix(indexPath, ".json")+".lock")
	if err != nil {
		return nil, fmt.Errorf("system: %w", err)
	}
	defer unlock()
	// Another caller may have built while this one waited for the lock.
	if a, ok := cached(ctx, h, indexPath); ok {
		return a, nil
	}
	entry, err := build(ctx, h, cfg)
	if err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(entry, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := h.WriteFile(ctx, indexPath, data, 0o644); err != nil {
		return nil, fmt.Errorf("system: write cache index: %w", err)
	}
	return &entry.Artifacts, nil
}

// key names cfg's index entry: the inputs' paths and what the builder adds to them.
func (cfg Config) key() string {
	sum := sha256.New()
	_, _ = fmt.Fprintf(sum, "%d\x00%s\x00%s\x00%s\x00%s\x00%s\x00%q\x00", cacheVersion, cfg.Kernel, cfg.Modules, cfg.Busybox,
		guestInit(), powerButtonHandler+hotplugHandler, initrdDirs)
	for _, m := range guestModules {
		_, _ = fmt.Fprintf(sum, "%s:%t\x00", m.name, m.required)
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// cached returns the indexed artifacts when every input is unchanged and both artifacts exist.
func cached(ctx context.Context, h host.Host, indexPath string) (*Artifacts, bool) {
	data, err := h.ReadFile(ctx, indexPath)
	if err != nil {
		return nil, false
	}
	var e indexEntry
	if json.Unmarshal(data, &e) != nil || e.Version != cacheVersion {
		return nil, false
	}
	for _, in := range e.Inputs {
		fi, err := h.Stat(ctx, in.Path)
		if err != nil || stampOf(in.Path, fi) != in {
			return nil, false
		}
	}
	for i, p := range []string{e.Artifacts.Kernel, e.Artifacts.Initrd} {
		fi, err := h.Stat(ctx, p)
		if err != nil || fi.Size() != e.Sizes[i] {
			return nil, false
		}
	}
	return &e.Artifacts, true
}

// inputs reads input files, recording each one's stamp as it was before the read: a file that
// changes meanwhile then fails the next freshness check instead of passing it.
type inputs struct {
	h      host.Host
	stamps []inputStamp
}

func (in *inputs) read(ctx context.Context, p string) ([]byte, error) {
	fi, err := in.h.Stat(ctx, p)
	if err != nil {
		return nil, err
	}
	data, err := in.h.ReadFile(ctx, p)
	if err != nil {
		return nil, err
	}
	in.stamps = append(in.stamps, stampOf(p, fi))
	return data, nil
}

// build makes both artifacts from cfg's files and stores them in the cache.
func build(ctx context.Context, h host.Host, cfg Config) (*indexEntry, error) {
	in := &inputs{h: h}
	image, err := in.read(ctx, cfg.Kernel)
	if err != nil {
		return nil, fmt.Errorf("system: kernel: %w", err)
	}
	kernel, err := vmlinux(image)
	if err != nil {
		return nil, fmt.Errorf("system: kernel %s: %w", cfg.Kernel, err)
	}
	release, err := kernelRelease(kernel)
	if err != nil {
		return nil, fmt.Errorf("system: kernel %s: %w", cfg.Kernel, err)
	}
	machine, err := elfMachine(kernel)
	if err != nil {
		return nil, fmt.Errorf("system: kernel %s: %w", cfg.Kernel, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	busybox, err := in.read(ctx, cfg.Busybox)
	if err != nil {
		return nil, fmt.Errorf("system: busybox: %w", err)
	}
	if err := checkBusybox(busybox, machine); err != nil {
		return nil, fmt.Errorf("system: busybox %s: %w", cfg.Busybox, err)
	}
	files := []initrdFile{
		{name: "init", mode: 0o755, data: []byte(guestInit())},
		{name: initrdBusybox, mode: 0o755, data: busybox},
		{name: initrdPowerButton, mode: 0o755, data: []byte(powerButtonHandler)},
		{name: initrdHotplug, mode: 0o755, data: []byte(hotplugHandler)},
	}
	modules, err := readModules(ctx, in, cfg.Modules, release)
	if err != nil {
		return nil, err
	}
	files = append(files, modules...)
	var loadList strings.Builder
	for _, m := range modules {
		loadList.WriteString("/" + m.name + "\n")
	}
	files = append(files, initrdFile{name: initrdModulesList, mode: 0o644, data: []byte(loadList.String())})
	initrd, err := buildInitrd(initrdDirs, files)
	if err != nil {
		return nil, fmt.Errorf("system: initrd: %w", err)
	}

	if err := h.MkdirAll(ctx, cfg.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("system: create cache dir: %w", err)
	}
	e := &indexEntry{Version: cacheVersion, Inputs: in.stamps}
	e.Artifacts.KernelRelease = release
	e.Artifacts.Kernel, e.Artifacts.KernelHash, err = store(ctx, h, cfg.CacheDir, "vmlinux-", kernel)
	if err != nil {
		return nil, err
	}
	e.Artifacts.Initrd, e.Artifacts.InitrdHash, err = store(ctx, h, cfg.CacheDir, "initrd-", initrd)
	if err != nil {
		return nil, err
	}
	e.Sizes = [2]int64{int64(len(kernel)), int64(len(initrd))}
	return e, nil
}

// readModules returns the guest's modules (uncompressed, at lib/modules/RELEASE/… in the
// initrd) in load order. dir "" means the kernel has every driver built in.
func readModules(ctx context.Context, in *inputs, dir, release string) ([]initrdFile, error) {
	if dir == "" {
		return nil, nil
	}
	dep, err := in.read(ctx, path.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("system: modules: %w (run depmod %s)", err, release)
	}
	builtin, err := in.read(ctx, path.Join(dir, "modules.builtin"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("system: modules: %w", err)
	}
	ix, err := parseModuleIndex(dep, builtin)
	if err != nil {
		return nil, fmt.Errorf("system: %s: %w", dir, err)
	}
	order, err := ix.loadOrder(guestModules)
	if err != nil {
		return nil, fmt.Errorf("system: kernel %s: %w", release, err)
	}
	files := make([]initrdFile, 0, len(order))
	for _, rel := range order {
		data, err := in.read(ctx, path.Join(dir, rel))
		if err != nil {
			return nil, fmt.Errorf("system: module: %w", err)
		}
		if c, ok := sniffCompression(data); ok {
			if data, err = decompress(c, data, maxDecompressedBytes); err != nil {
				return nil, fmt.Errorf("system: module %s: %w", rel, err)
			}
		}
		if err := checkModule(data, release); err != nil {
			return nil, fmt.Errorf("system: module %s: %w", path.Join(dir, rel), err)
		}
		files = append(files, initrdFile{name: path.Join("lib/modules", release, uncompressedName(rel)), mode: 0o644, data: data})
	}
	return files, nil
}

// store writes data to dir/prefix+sha256 unless a file of that name and size is already there.
func store(ctx context.Context, h host.Host, dir, prefix string, data []byte) (file, hash string, err error) {
	sum := sha256.Sum256(data)
	hash = hex.EncodeToString(sum[:])
	file = path.Join(dir, prefix+hash)
	if fi, err := h.Stat(ctx, file); err == nil && fi.Size() == int64(len(data)) {
		return file, hash, nil
	}
	if err := h.WriteFile(ctx, file, data, 0o644); err != nil {
		return "", "", fmt.Errorf("system: write %s: %w", file, err)
	}
	return file, hash, nil
}

func elfMachine(image []byte) (elf.Machine, error) {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return 0, err
	}
	return f.Machine, nil
}
