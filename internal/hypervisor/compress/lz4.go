// Package compress turns a snapshot's memory image into an LZ4 frame and back. The frame format is
// the one the lz4 command line tool reads and writes, so an operator can inspect a snapshot by hand.
package compress

import (
	"context"
	"fmt"
	"io"
	"runtime"

	"github.com/pierrec/lz4/v4"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
)

// Level is the compression level used for snapshots: the fastest one, as `lz4 -1`. Memory images
// are mostly zero pages and page-cache, where higher levels gain little and cost a lot of time.
const Level = lz4.Fast

// blockSize is the frame's block size. On real snapshot memory 256 KiB blocks compress best with
// this library (better than 64 KiB, 1 MiB and 4 MiB; see BenchmarkLZ4VersusCLI) and still keep
// both cores busy.
const blockSize = lz4.Block256Kb

// File compresses src into dst (both on h) and returns the number of bytes written. dst is
// removed again if anything fails. A host that can compress in place does (host.LZ4er).
func File(ctx context.Context, h host.Host, src, dst string) (int64, error) {
	if n, handled, err := inPlace(ctx, h, src, dst, false); handled {
		return n, err
	}
	return transform(ctx, h, src, dst, func(r io.Reader, w io.Writer) error {
		zw, err := NewWriter(w)
		if err != nil {
			return err
		}
		if _, err := io.Copy(zw, r); err != nil {
			return err
		}
		return zw.Close()
	})
}

// NewWriter compresses what is written to it into one LZ4 frame on w, as File does, with its
// blocks compressed in parallel; Close ends the frame (and does not close w).
func NewWriter(w io.Writer) (io.WriteCloser, error) {
	zw := lz4.NewWriter(w)
	if err := zw.Apply(
		lz4.CompressionLevelOption(Level),
		lz4.BlockSizeOption(blockSize),
		lz4.ConcurrencyOption(workers()),
		lz4.ChecksumOption(false),
	); err != nil {
		return nil, err
	}
	return zw, nil
}

// Decompress expands the LZ4 frame src into dst (both on h) and returns the bytes written.
func Decompress(ctx context.Context, h host.Host, src, dst string) (int64, error) {
	if n, handled, err := inPlace(ctx, h, src, dst, true); handled {
		return n, err
	}
	return transform(ctx, h, src, dst, func(r io.Reader, w io.Writer) error {
		zr, err := NewReader(r)
		if err != nil {
			return err
		}
		_, err = io.Copy(w, zr)
		return err
	})
}

// NewReader decompresses the LZ4 frame read from r, its blocks in parallel.
func NewReader(r io.Reader) (io.Reader, error) {
	zr := lz4.NewReader(r)
	if err := zr.Apply(lz4.ConcurrencyOption(workers())); err != nil {
		return nil, err
	}
	return zr, nil
}

func inPlace(ctx context.Context, h host.Host, src, dst string, decompress bool) (int64, bool, error) {
	z, ok := h.(host.LZ4er)
	if !ok {
		return 0, false, nil
	}
	handled, err := z.LZ4(ctx, src, dst, decompress)
	if !handled || err != nil {
		return 0, handled, err
	}
	fi, err := h.Stat(ctx, dst)
	if err != nil {
		return 0, true, err
	}
	return fi.Size(), true, nil
}

func transform(ctx context.Context, h host.Host, src, dst string, fn func(io.Reader, io.Writer) error) (n int64, err error) {
	in, err := h.Open(ctx, src)
	if err != nil {
		return 0, err
	}
	defer func() { _ = in.Close() }()
	out, err := h.Create(ctx, dst)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			_ = h.Remove(context.WithoutCancel(ctx), dst)
		}
	}()
	cw := &countingWriter{w: out, ctx: ctx}
	if err := fn(&ctxReader{r: in, ctx: ctx}, cw); err != nil {
		return cw.n, fmt.Errorf("%s → %s: %w", src, dst, err)
	}
	return cw.n, nil
}

func workers() int { return max(1, runtime.GOMAXPROCS(0)) }

type countingWriter struct {
	w   io.Writer
	n   int64
	ctx context.Context
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ctxReader stops a long copy when the caller's deadline passes.
type ctxReader struct {
	r   io.Reader
	ctx context.Context
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
