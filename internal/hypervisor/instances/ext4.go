package instances

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
)

// The host's ext4 tools (e2fsprogs), on the volumes' disk images.

// errExt4Full: the filesystem has no room for what it was asked to hold.
var errExt4Full = errors.New("the filesystem is too small")

// ext4Tools are the e2fsprogs programs volumes need on the host.
var ext4Tools = []string{"mkfs.ext4", "e2fsck", "resize2fs"}

// maxExt4Label is how long an ext4 label may be.
const maxExt4Label = 16

// mkfsExt4 formats image (a sparse file of the volume's size) with lazy init, which writes almost
// nothing however large it is, filled from the directory seed when seed is not "".
func mkfsExt4(ctx context.Context, h host.Host, image, label, seed string) error {
	if len(label) > maxExt4Label {
		label = label[:maxExt4Label]
	}
	argv := []string{"mkfs.ext4", "-q", "-F", "-L", label, "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"}
	if seed != "" {
		argv = append(argv, "-d", seed)
	}
	if _, err := h.Run(ctx, nil, append(argv, image)...); err != nil {
		if strings.Contains(err.Error(), "Could not allocate") {
			return fmt.Errorf("format the disk image: %w (%w)", errExt4Full, err)
		}
		return fmt.Errorf("format the disk image: %w", err)
	}
	return nil
}

// fsckScript runs e2fsck -f -p on "$1"; exit 1 (errors corrected) is success as much as 0 is.
const fsckScript = `e2fsck -f -p "$1"; rc=$?; [ "$rc" -le 1 ] && exit 0; exit "$rc"`

// fsckExt4 checks image (not in use), repairing what is safe to repair.
func fsckExt4(ctx context.Context, h host.Host, image string) error {
	if _, err := h.Run(ctx, nil, "sh", "-c", fsckScript, "sh", image); err != nil {
		return fmt.Errorf("check the filesystem: %w", err)
	}
	return nil
}

// growExt4 grows the filesystem in image (not in use) from have to want bytes. A failure leaves
// a filesystem that checks clean: the file grown first holds the old filesystem unchanged until
// resize2fs rewrites its metadata, and a resize2fs that failed is followed by a check; the file
// goes back to have bytes when the filesystem still ends there.
func growExt4(ctx context.Context, h host.Host, image string, have, want int64) error {
	if err := fsckExt4(ctx, h, image); err != nil { // resize2fs refuses a filesystem not checked
		return err
	}
	if err := h.Truncate(ctx, image, want); err != nil {
		return fmt.Errorf("grow the disk image: %w", err)
	}
	_, rerr := h.Run(ctx, nil, "resize2fs", image)
	if rerr == nil {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	if err := fsckExt4(ctx, h, image); err != nil {
		return fmt.Errorf("grow the filesystem: %w; and then %w", rerr, err)
	}
	if n, err := ext4Bytes(ctx, h, image); err == nil && n <= have {
		_ = h.Truncate(ctx, image, have) // nothing of the filesystem lies beyond have
	}
	return fmt.Errorf("grow the filesystem: %w (the filesystem checks clean and keeps its data)", rerr)
}

// ext4Bytes is the size of the filesystem in image, from its superblock.
func ext4Bytes(ctx context.Context, h host.Host, image string) (int64, error) {
	out, err := h.Run(ctx, nil, "dumpe2fs", "-h", image)
	if err != nil {
		return 0, err
	}
	var blocks, size int64
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "Block count":
			blocks, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		case "Block size":
			size, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if blocks == 0 || size == 0 {
		return 0, fmt.Errorf("dumpe2fs -h %s: no block count or block size", image)
	}
	return blocks * size, nil
}

// allocatedBytes is what each file takes on the host's disk (stat's 512-byte blocks), in one
// command for all of them.
func allocatedBytes(ctx context.Context, h host.Host, paths []string) ([]int64, error) {
	out, err := h.Run(ctx, nil, append([]string{"stat", "-c", "%b", "--"}, paths...)...)
	if err != nil {
		return nil, fmt.Errorf("the space the volumes' images take: %w", err)
	}
	lines := strings.Fields(string(out))
	if len(lines) != len(paths) {
		return nil, fmt.Errorf("stat of %d volume images printed %d lines", len(paths), len(lines))
	}
	n := make([]int64, len(paths))
	for i, l := range lines {
		b, err := strconv.ParseInt(l, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("stat printed %q for %s", l, paths[i])
		}
		n[i] = b * 512
	}
	return n, nil
}
