package system

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"path"
	"strings"
)

// ErrMissingModule means the kernel has a required driver neither built in nor as a module.
var ErrMissingModule = errors.New("required kernel module missing")

// guestModule is a driver the guest init loads when the kernel has it as a module.
type guestModule struct {
	name string
	// required: the guest cannot boot without it, so a kernel lacking it is rejected up front.
	required bool
}

// guestModules in load order. crc32c_generic is listed because busybox insmod knows nothing of
// ext4's soft dependency on it; button and evdev deliver the ACPI power button to acpid.
var guestModules = []guestModule{
	{name: "crc32c_generic", required: true},
	{name: "virtio_pci", required: true},
	{name: "virtio_mmio"},
	{name: "virtio_blk", required: true},
	{name: "virtio_net"},
	{name: "virtio_console"},
	{name: "virtio_balloon"},
	{name: "virtio_mem"},
	{name: "virtio_rng"},
	{name: "erofs", required: true},
	{name: "ext4", required: true},
	{name: "overlay", required: true},
	{name: "button"},
	{name: "evdev"},
}

// moduleIndex is what depmod wrote about one kernel's modules.
type moduleIndex struct {
	deps    map[string][]string // module path (relative to lib/modules/RELEASE) → its dependencies' paths
	byName  map[string]string   // module name → path
	builtin map[string]bool     // names of modules compiled into the kernel
}

// moduleName is the name the kernel knows a module file by: no directory, no .ko[.xz|.zst|.gz],
// dashes as underscores.
func moduleName(p string) string {
	base := path.Base(p)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// parseModuleIndex reads modules.dep ("path: dep dep …" per line) and modules.builtin (one path
// per line).
func parseModuleIndex(modulesDep, modulesBuiltin []byte) (*moduleIndex, error) {
	ix := &moduleIndex{deps: map[string][]string{}, byName: map[string]string{}, builtin: map[string]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(modulesDep))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		mod, deps, ok := strings.Cut(text, ":")
		if !ok {
			return nil, fmt.Errorf("modules.dep line %d: %q has no ':'", line, text)
		}
		ix.deps[mod] = strings.Fields(deps)
		ix.byName[moduleName(mod)] = mod
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("modules.dep: %w", err)
	}
	for _, p := range strings.Fields(string(modulesBuiltin)) {
		ix.builtin[moduleName(p)] = true
	}
	return ix, nil
}

// loadOrder lists the module files to insmod for wanted, each after its dependencies and each
// once. Built-in drivers are skipped, optional ones the kernel lacks are left out, and a required
// one that is neither built in nor a module is an error.
func (ix *moduleIndex) loadOrder(wanted []guestModule) ([]string, error) {
	var order []string
	done := map[string]bool{}
	var visit func(p string, chain []string) error
	visit = func(p string, chain []string) error {
		if done[p] {
			return nil
		}
		for _, c := range chain {
			if c == p {
				return fmt.Errorf("modules.dep has a dependency cycle: %s -> %s", strings.Join(chain, " -> "), p)
			}
		}
		for _, d := range ix.deps[p] {
			if err := visit(d, append(chain, p)); err != nil {
				return err
			}
		}
		done[p] = true
		order = append(order, p)
		return nil
	}
	var missing []string
	for _, m := range wanted {
		if ix.builtin[m.name] {
			continue
		}
		p, ok := ix.byName[m.name]
		if !ok {
			if m.required {
				missing = append(missing, m.name)
			}
			continue
		}
		if err := visit(p, nil); err != nil {
			return nil, err
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s neither built into the kernel (modules.builtin) nor in modules.dep",
			ErrMissingModule, strings.Join(missing, ", "))
	}
	return order, nil
}

// uncompressedName is a module's path once decompressed: ext4.ko.xz → ext4.ko.
func uncompressedName(rel string) string {
	if i := strings.LastIndex(rel, ".ko"); i >= 0 {
		return rel[:i+len(".ko")]
	}
	return rel
}

// checkModule makes sure data is a module built for release: insmod of one built for another
// kernel fails in the guest, far from the cause.
func checkModule(data []byte, release string) error {
	if !bytes.HasPrefix(data, []byte(elf.ELFMAG)) {
		return fmt.Errorf("not an ELF object (starts with % x)", head(data, 8))
	}
	i := bytes.Index(data, []byte("vermagic="))
	if i < 0 {
		return errors.New("no vermagic in its .modinfo")
	}
	vermagic := data[i+len("vermagic="):]
	if end := bytes.IndexByte(vermagic, 0); end >= 0 {
		vermagic = vermagic[:end]
	}
	if got, _, _ := strings.Cut(string(vermagic), " "); got != release {
		return fmt.Errorf("built for kernel release %s, the kernel is %s", got, release)
	}
	return nil
}
