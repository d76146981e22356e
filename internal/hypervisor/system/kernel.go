package system

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/therootcompany/xz"
	"github.com/ulikunitz/xz/lzma"
)

var (
	// ErrNotKernel means the configured kernel is neither an ELF vmlinux nor a bzImage.
	ErrNotKernel = errors.New("not a kernel image")
	// ErrNoPVH means the kernel is an ELF without the Xen PVH entry note that Cloud Hypervisor
	// and QEMU's direct ELF boot need.
	ErrNoPVH = errors.New("kernel has no PVH entry point")
)

// xenElfNotePhys32Entry is the note type of the PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY).
const xenElfNotePhys32Entry = 18

// maxDecompressedBytes bounds every decompression, so that a corrupt input cannot exhaust memory.
const maxDecompressedBytes = 512 << 20

// bzImage header fields (Documentation/arch/x86/boot.rst).
const (
	bzSetupSects    = 0x1f1
	bzMagic         = 0x202
	bzVersion       = 0x206
	bzPayloadOffset = 0x248
	bzPayloadLength = 0x24c
	bzHeaderEnd     = 0x250
)

// compression is one format the kernel's payload or a module may be compressed with.
type compression struct {
	name  string
	magic []byte
	// sizeInStream: the kernel build appends the decompressed size to every payload, and only
	// gzip's own trailer already ends with it.
	sizeInStream bool
	reader       func(r io.Reader) (io.Reader, error)
}

var compressions = []compression{
	{name: "gzip", magic: []byte{0x1f, 0x8b, 0x08}, sizeInStream: true, reader: func(r io.Reader) (io.Reader, error) {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		zr.Multistream(false)
		return zr, nil
	}},
	// therootcompany/xz, unlike ulikunitz/xz, decodes the x86 BCJ filter the kernel's XZ payload uses.
	{name: "xz", magic: []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, reader: func(r io.Reader) (io.Reader, error) {
		return xz.NewReader(r, 0)
	}},
	{name: "zstd", magic: []byte{0x28, 0xb5, 0x2f, 0xfd}, reader: func(r io.Reader) (io.Reader, error) {
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxDecompressedBytes))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}},
	{name: "lzma", magic: []byte{0x5d, 0x00, 0x00}, reader: func(r io.Reader) (io.Reader, error) {
		return lzma.NewReader(r)
	}},
	{name: "lz4", magic: []byte{0x02, 0x21, 0x4c, 0x18}, reader: func(r io.Reader) (io.Reader, error) {
		return lz4.NewReader(r), nil
	}},
}

// sniffCompression finds the format data starts with.
func sniffCompression(data []byte) (compression, bool) {
	for _, c := range compressions {
		if bytes.HasPrefix(data, c.magic) {
			return c, true
		}
	}
	return compression{}, false
}

// decompress reads all of data through c, up to limit bytes.
func decompress(c compression, data []byte, limit int64) ([]byte, error) {
	r, err := c.reader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.name, err)
	}
	if rc, ok := r.(io.Closer); ok {
		defer func() { _ = rc.Close() }()
	}
	out, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.name, err)
	}
	if int64(len(out)) > limit {
		return nil, fmt.Errorf("%s: decompresses to more than %d bytes", c.name, limit)
	}
	return out, nil
}

// vmlinux returns the PVH-bootable ELF for a kernel image: the image itself when it is an ELF,
// the decompressed payload when it is a bzImage.
func vmlinux(image []byte) ([]byte, error) {
	if bytes.HasPrefix(image, []byte(elf.ELFMAG)) {
		if err := checkPVH(image); err != nil {
			return nil, fmt.Errorf("ELF kernel: %w", err)
		}
		return image, nil
	}
	if len(image) < bzHeaderEnd || string(image[bzMagic:bzMagic+4]) != "HdrS" {
		return nil, fmt.Errorf("%w: neither an ELF vmlinux nor a bzImage (starts with % x)", ErrNotKernel, head(image, 8))
	}
	payload, err := bzPayload(image)
	if err != nil {
		return nil, err
	}
	c, ok := sniffCompression(payload)
	if !ok {
		return nil, fmt.Errorf("%w: bzImage payload has an unsupported compression (starts with % x; supported: gzip, xz, zstd, lzma, lz4)",
			ErrNotKernel, head(payload, 8))
	}
	if len(payload) < 4 {
		return nil, fmt.Errorf("%w: bzImage payload of %d bytes is too short", ErrNotKernel, len(payload))
	}
	size := int64(binary.LittleEndian.Uint32(payload[len(payload)-4:]))
	if size > maxDecompressedBytes {
		return nil, fmt.Errorf("%w: bzImage payload claims %d bytes uncompressed, more than %d", ErrNotKernel, size, maxDecompressedBytes)
	}
	stream := payload
	if !c.sizeInStream {
		stream = payload[:len(payload)-4]
	}
	out, err := decompress(c, stream, size)
	if err != nil {
		return nil, fmt.Errorf("bzImage payload: %w", err)
	}
	if int64(len(out)) != size {
		return nil, fmt.Errorf("bzImage %s payload decompressed to %d bytes, its trailer says %d", c.name, len(out), size)
	}
	if !bytes.HasPrefix(out, []byte(elf.ELFMAG)) {
		return nil, fmt.Errorf("%w: bzImage %s payload is not an ELF (starts with % x)", ErrNotKernel, c.name, head(out, 8))
	}
	if err := checkPVH(out); err != nil {
		return nil, fmt.Errorf("vmlinux in the bzImage (%s payload): %w", c.name, err)
	}
	return out, nil
}

// bzPayload slices the compressed kernel out of a bzImage using its boot protocol header.
func bzPayload(image []byte) ([]byte, error) {
	version := binary.LittleEndian.Uint16(image[bzVersion:])
	if version < 0x208 {
		return nil, fmt.Errorf("%w: bzImage boot protocol %d.%02d does not locate its payload (need 2.08 or later)",
			ErrNotKernel, version>>8, version&0xff)
	}
	setupSects := int(image[bzSetupSects])
	if setupSects == 0 {
		setupSects = 4 // the boot protocol's historical default
	}
	start := (setupSects+1)*512 + int(binary.LittleEndian.Uint32(image[bzPayloadOffset:]))
	end := start + int(binary.LittleEndian.Uint32(image[bzPayloadLength:]))
	if start >= end || end > len(image) {
		return nil, fmt.Errorf("%w: bzImage payload [%d, %d) lies outside the %d-byte file", ErrNotKernel, start, end, len(image))
	}
	return image[start:end], nil
}

// checkPVH looks for the Xen PVH entry note in the ELF's note segments.
func checkPVH(image []byte) error {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotKernel, err)
	}
	notes := 0
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, err := io.ReadAll(p.Open())
		if err != nil {
			return fmt.Errorf("read note segment: %w", err)
		}
		found, n := hasNote(data, f.ByteOrder, "Xen", xenElfNotePhys32Entry)
		if found {
			return nil
		}
		notes += n
	}
	return fmt.Errorf("%w: %s %s ELF with %d notes, none of them Xen type %d (XEN_ELFNOTE_PHYS32_ENTRY); build the kernel with CONFIG_PVH=y",
		ErrNoPVH, f.Class, f.Machine, notes, xenElfNotePhys32Entry)
}

// hasNote walks ELF notes (namesz, descsz, type, name, desc; 4-byte aligned) and reports whether
// one has the given owner and type, and how many notes it read.
func hasNote(data []byte, order binary.ByteOrder, owner string, typ uint32) (bool, int) {
	n := 0
	for len(data) >= 12 {
		namesz, descsz, t := order.Uint32(data), order.Uint32(data[4:]), order.Uint32(data[8:])
		nameEnd := 12 + align4(uint64(namesz))
		end := nameEnd + align4(uint64(descsz))
		if end > uint64(len(data)) {
			break
		}
		n++
		name := string(bytes.TrimRight(data[12:12+namesz], "\x00"))
		if name == owner && t == typ {
			return true, n
		}
		data = data[end:]
	}
	return false, n
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// bannerRelease matches the kernel's linux_banner ("Linux version 6.1.0-13-amd64 (…"); the
// plain prefix is searched first because a regexp over a whole vmlinux is slow.
var (
	bannerPrefix  = []byte("Linux version ")
	bannerRelease = regexp.MustCompile(`^Linux version ([0-9][0-9A-Za-z._+~-]*) \(`)
)

// kernelRelease reads the release (uname -r) from the banner compiled into the vmlinux.
func kernelRelease(vmlinux []byte) (string, error) {
	for rest := vmlinux; ; {
		i := bytes.Index(rest, bannerPrefix)
		if i < 0 {
			return "", fmt.Errorf("%w: no \"Linux version\" banner in the vmlinux", ErrNotKernel)
		}
		if m := bannerRelease.FindSubmatch(head(rest[i:], 256)); m != nil {
			return string(m[1]), nil
		}
		rest = rest[i+len(bannerPrefix):]
	}
}

func head(b []byte, n int) []byte {
	if len(b) < n {
		return b
	}
	return b[:n]
}
