package compress

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// memoryLike is a stand-in for a guest memory image: zero pages, repeated text and random pages.
func memoryLike(size int) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for off := 0; off+4096 <= size; off += 4096 {
		switch r.IntN(4) {
		case 0: // zero page
		case 1:
			copy(b[off:off+4096], bytes.Repeat([]byte("kernel text and page cache "), 160))
		default:
			for i := off; i < off+4096; i += 8 {
				v := r.Uint64()
				for j := 0; j < 8; j++ {
					b[i+j] = byte(v >> (8 * j))
				}
			}
		}
	}
	return b
}

func TestRoundTripAndTheLz4ToolReadsOurFrames(t *testing.T) {
	lz4cli := testutil.RequireTool(t, "lz4")
	ctx := context.Background()
	dir := t.TempDir()
	data := memoryLike(9<<20 + 123)
	raw := filepath.Join(dir, "memory-ranges")
	if err := os.WriteFile(raw, data, 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := File(ctx, host.Local{}, raw, raw+".lz4")
	if err != nil {
		t.Fatal(err)
	}
	if n <= 0 || n >= int64(len(data)) {
		t.Fatalf("compressed size %d of %d bytes", n, len(data))
	}
	if out, err := exec.Command(lz4cli, "-d", "-f", "-q", raw+".lz4", filepath.Join(dir, "by-cli")).CombinedOutput(); err != nil {
		t.Fatalf("lz4 -d: %v: %s", err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "by-cli")); !bytes.Equal(got, data) {
		t.Fatal("lz4 -d of our frame differs from the input")
	}
	if out, err := exec.Command(lz4cli, "-1", "-f", "-q", raw, filepath.Join(dir, "cli.lz4")).CombinedOutput(); err != nil {
		t.Fatalf("lz4 -1: %v: %s", err, out)
	}
	if _, err := Decompress(ctx, host.Local{}, filepath.Join(dir, "cli.lz4"), filepath.Join(dir, "by-us")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "by-us")); !bytes.Equal(got, data) {
		t.Fatal("our decompression of lz4 -1 output differs from the input")
	}
}

func TestCorruptFrameFailsAndLeavesNoOutput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "memory-ranges.lz4")
	if err := os.WriteFile(bad, []byte("this is not an lz4 frame at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "memory-ranges")
	if _, err := Decompress(context.Background(), host.Local{}, bad, out); err == nil {
		t.Fatal("decompressing garbage succeeded")
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("output left behind: %v", err)
	}
}

func TestCancelledContextStopsCompression(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "m")
	if err := os.WriteFile(raw, memoryLike(1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := File(ctx, host.Local{}, raw, raw+".lz4"); err == nil {
		t.Fatal("compression with a cancelled context succeeded")
	}
}
