package system

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Small synthetic kernels, busyboxes and module trees, so that the builder's logic is tested
// without the real (large, slow to decompress) kernel.

const fakeRelease = "9.9.9-test"

type elfSegment struct {
	typ  elf.ProgType
	data []byte
}

// makeELF builds a minimal little-endian ELF64 executable whose segments hold the given data.
func makeELF(machine elf.Machine, segs ...elfSegment) []byte {
	const ehsize, phentsize = 64, 56
	var b bytes.Buffer
	le := binary.LittleEndian
	ident := [16]byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)}
	b.Write(ident[:])
	_ = binary.Write(&b, le, uint16(elf.ET_EXEC))
	_ = binary.Write(&b, le, uint16(machine))
	_ = binary.Write(&b, le, uint32(elf.EV_CURRENT))
	_ = binary.Write(&b, le, uint64(0x1000000)) // entry
	_ = binary.Write(&b, le, uint64(ehsize))    // phoff
	_ = binary.Write(&b, le, uint64(0))         // shoff
	_ = binary.Write(&b, le, uint32(0))         // flags
	_ = binary.Write(&b, le, uint16(ehsize))
	_ = binary.Write(&b, le, uint16(phentsize))
	_ = binary.Write(&b, le, uint16(len(segs)))
	_ = binary.Write(&b, le, uint16(64)) // shentsize
	_ = binary.Write(&b, le, uint16(0))  // shnum
	_ = binary.Write(&b, le, uint16(0))  // shstrndx
	off := uint64(ehsize + phentsize*len(segs))
	for _, s := range segs {
		_ = binary.Write(&b, le, uint32(s.typ))
		_ = binary.Write(&b, le, uint32(elf.PF_R))
		_ = binary.Write(&b, le, off)
		_ = binary.Write(&b, le, uint64(0x1000000)+off) // vaddr
		_ = binary.Write(&b, le, uint64(0x1000000)+off) // paddr
		_ = binary.Write(&b, le, uint64(len(s.data)))
		_ = binary.Write(&b, le, uint64(len(s.data)))
		_ = binary.Write(&b, le, uint64(4))
		off += uint64(len(s.data))
	}
	for _, s := range segs {
		b.Write(s.data)
	}
	return b.Bytes()
}

// elfNote encodes one ELF note.
func elfNote(owner string, typ uint32, desc []byte) []byte {
	var b bytes.Buffer
	name := append([]byte(owner), 0)
	_ = binary.Write(&b, binary.LittleEndian, uint32(len(name)))
	_ = binary.Write(&b, binary.LittleEndian, uint32(len(desc)))
	_ = binary.Write(&b, binary.LittleEndian, typ)
	b.Write(name)
	b.Write(make([]byte, align4(uint64(len(name)))-uint64(len(name))))
	b.Write(desc)
	b.Write(make([]byte, align4(uint64(len(desc)))-uint64(len(desc))))
	return b.Bytes()
}

// fakeVmlinux is an x86-64 ELF with a PVH entry note (after another note) and a banner.
func fakeVmlinux() []byte {
	notes := append(elfNote("GNU", 3, []byte{1, 2, 3, 4}), elfNote("Xen", xenElfNotePhys32Entry, []byte{0, 0, 0, 1})...)
	banner := []byte("Linux version %s\x00Linux version " + fakeRelease + " (builder@example) #1 SMP\n\x00")
	return makeELF(elf.EM_X86_64, elfSegment{elf.PT_LOAD, banner}, elfSegment{elf.PT_NOTE, notes})
}

// compressors write the formats a bzImage payload may use, as the kernel build does.
var compressors = map[string]func(w io.Writer) (io.WriteCloser, error){
	"gzip": func(w io.Writer) (io.WriteCloser, error) { return gzip.NewWriter(w), nil },
	"xz":   func(w io.Writer) (io.WriteCloser, error) { return xz.NewWriter(w) },
	"zstd": func(w io.Writer) (io.WriteCloser, error) { return zstd.NewWriter(w) },
	"lzma": func(w io.Writer) (io.WriteCloser, error) { return lzma.NewWriter(w) },
	"lz4": func(w io.Writer) (io.WriteCloser, error) {
		zw := lz4.NewWriter(w)
		return zw, zw.Apply(lz4.LegacyOption(true))
	},
}

func compress(t testing.TB, format string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := compressors[format](&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// fakeBzImage wraps payload in a bzImage header of the given boot protocol version, with the
// decompressed size appended as the kernel build does (gzip's trailer already ends with it).
func fakeBzImage(version uint16, format string, payload []byte, size int) []byte {
	const setupSects = 3
	img := make([]byte, (setupSects+1)*512)
	img[bzSetupSects] = setupSects
	copy(img[bzMagic:], "HdrS")
	binary.LittleEndian.PutUint16(img[bzVersion:], version)
	protected := make([]byte, 100) // the decompressor stub before the payload
	if format != "gzip" {
		payload = binary.LittleEndian.AppendUint32(append([]byte(nil), payload...), uint32(size))
	}
	binary.LittleEndian.PutUint32(img[bzPayloadOffset:], uint32(len(protected)))
	binary.LittleEndian.PutUint32(img[bzPayloadLength:], uint32(len(payload)))
	img = append(img, protected...)
	img = append(img, payload...)
	return append(img, make([]byte, 64)...) // what follows the payload in a real image
}

// fakeModule is a module object for release.
func fakeModule(name, release string) []byte {
	return []byte("\x7fELF" + strings.Repeat("\x00", 60) + "name=" + name + "\x00vermagic=" + release + " SMP mod_unload\x00")
}

// fakeModuleTree writes lib/modules/RELEASE with every required module, ext4 and virtio_blk
// compressed, overlay built in, and returns its path.
func fakeModuleTree(t testing.TB, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "lib", "modules", fakeRelease)
	files := map[string][]byte{
		"kernel/crypto/crc32c_generic.ko":                fakeModule("crc32c_generic", fakeRelease),
		"kernel/drivers/virtio/virtio_ring.ko":           fakeModule("virtio_ring", fakeRelease),
		"kernel/drivers/virtio/virtio.ko":                fakeModule("virtio", fakeRelease),
		"kernel/drivers/virtio/virtio_pci.ko":            fakeModule("virtio_pci", fakeRelease),
		"kernel/drivers/block/virtio_blk.ko.zst":         compress(t, "zstd", fakeModule("virtio_blk", fakeRelease)),
		"kernel/drivers/char/hw_random/virtio-rng.ko.gz": compress(t, "gzip", fakeModule("virtio_rng", fakeRelease)),
		"kernel/fs/jbd2/jbd2.ko":                         fakeModule("jbd2", fakeRelease),
		"kernel/fs/mbcache.ko":                           fakeModule("mbcache", fakeRelease),
		"kernel/fs/ext4/ext4.ko.xz":                      compress(t, "xz", fakeModule("ext4", fakeRelease)),
		"kernel/fs/erofs/erofs.ko":                       fakeModule("erofs", fakeRelease),
		"kernel/fs/unrelated/unrelated.ko":               fakeModule("unrelated", fakeRelease),
	}
	for name, data := range files {
		writeFile(t, filepath.Join(root, name), data)
	}
	writeFile(t, filepath.Join(root, "modules.dep"), []byte(`kernel/crypto/crc32c_generic.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko.zst: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/hw_random/virtio-rng.ko.gz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/fs/ext4/ext4.ko.xz: kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/erofs/erofs.ko:
kernel/fs/unrelated/unrelated.ko:
`))
	writeFile(t, filepath.Join(root, "modules.builtin"), []byte("kernel/fs/overlayfs/overlay.ko\nkernel/drivers/virtio/virtio_mmio.ko\n"))
	return root
}

// fakeSystem writes a small bzImage, a static "busybox" and a module tree, and returns a Config
// for them with its cache in dir.
func fakeSystem(t testing.TB, dir string) Config {
	t.Helper()
	kernel := filepath.Join(dir, "vmlinuz")
	vmlinux := fakeVmlinux()
	writeFile(t, kernel, fakeBzImage(0x20f, "gzip", compress(t, "gzip", vmlinux), len(vmlinux)))
	busybox := filepath.Join(dir, "busybox")
	writeFile(t, busybox, makeELF(elf.EM_X86_64, elfSegment{elf.PT_LOAD, []byte("static busybox")}))
	return Config{Kernel: kernel, Modules: fakeModuleTree(t, dir), Busybox: busybox, CacheDir: filepath.Join(dir, "cache")}
}

func writeFile(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
