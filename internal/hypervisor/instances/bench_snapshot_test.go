package instances

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/compress"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// Standby and restore of a 2 GiB guest holding 1 GiB of live data, each next to its baseline
// measured in the same run: the raw snapshot write (CompressSnapshots off) for the standby, and
// `lz4 -d` of the same compressed snapshot to /dev/null for the restore. The times are the
// manager's (SetState), not a whole terraform apply.
//
// The live data, in the guest's /dev/shm: 8 x 64 MiB of /dev/urandom output (one 64 MiB draw,
// copied: lz4 finds no match across copies that far apart, so it stays incompressible) and 8 x 64
// MiB of one line of text repeated (which lz4 compresses to almost nothing): the image compresses
// about 2:1, half of it not at all.
const (
	fillChunk  = 64 * units.MiB
	fillChunks = 8 // of each kind
	textLine   = "hypeman standby benchmark: a line of text, repeated as logs and page cache repeat"
)

const mib = float64(units.MiB)

// fillScript fills the guest's /dev/shm with the live data and prints "filled"; with free, it then
// frees all of it but one chunk of each kind and prints "freed".
func fillScript(free bool) string {
	var b strings.Builder
	b.WriteString("mount -o remount,size=1600m /dev/shm; ")
	fmt.Fprintf(&b, "head -c %d /dev/urandom > /dev/shm/r0; ", fillChunk)
	fmt.Fprintf(&b, "yes '%s' | head -c %d > /dev/shm/t0; ", textLine, fillChunk)
	for i := 1; i < fillChunks; i++ {
		fmt.Fprintf(&b, "cat /dev/shm/r0 > /dev/shm/r%d; cat /dev/shm/t0 > /dev/shm/t%d; ", i, i)
	}
	b.WriteString("echo filled; ")
	if free {
		for i := 1; i < fillChunks; i++ {
			fmt.Fprintf(&b, "rm /dev/shm/r%d /dev/shm/t%d; ", i, i)
		}
		b.WriteString("echo freed; ")
	}
	return b.String() + counterScript
}

// quietRecorder is a logRecorder that does not log.
func quietRecorder(r *logRecorder) func(context.Context, string, map[string]any) {
	return func(_ context.Context, msg string, f map[string]any) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.fields == nil {
			r.fields = map[string][]map[string]any{}
		}
		r.fields[msg] = append(r.fields[msg], f)
	}
}

func BenchmarkSnapshotStream(b *testing.B) {
	lz4cli := testutil.RequireTool(b, "lz4")
	env := newTestEnv(b)
	var logs logRecorder
	env.m = env.manager(b, func(o *Options) { o.Log = quietRecorder(&logs) })
	ctx := context.Background()
	spec := env.spec("snapbench")
	spec.Memory, spec.Hotplug = 2*units.GiB, 0
	spec.Entrypoint = []string{"/bin/sh", "-c", fillScript(false)}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		b.Fatal(err)
	}
	waitConsoleLine(b, env, inst, "filled", 10*time.Minute)
	snap := filepath.Join(inst.Dir, "snapshots", "snapshot-latest")
	raw, compressed := filepath.Join(snap, "memory-ranges"), filepath.Join(snap, "memory-ranges.lz4")
	pipeOurs := oursAsLZ4(b)
	bigBlocks := wrapLZ4(b, lz4cli, "-B7")

	var m struct {
		rawStandby, catRaw, cliPipe, oursPipe, rawRestore                     time.Duration
		streamStandby, streamSnapshot, lz4d, streamRestore, oursStreamStandby time.Duration
		bigBlocksStandby, restorePhase                                        time.Duration
		rawBytes, cliBytes, oursPipeBytes, oursBytes, streamBytes             int64
	}
	origPath := os.Getenv("PATH")
	standby := func(compressing bool, path string) time.Duration {
		env.m.opts.CompressSnapshots = compressing
		if path != "" {
			b.Setenv("PATH", path)
			defer b.Setenv("PATH", origPath)
		}
		t := time.Now()
		if _, err := env.m.SetState(ctx, inst.ID, Standby); err != nil {
			b.Fatal(err)
		}
		return time.Since(t)
	}
	restore := func() time.Duration {
		t := time.Now()
		if _, err := env.m.SetState(ctx, inst.ID, Running); err != nil {
			b.Fatal(err)
		}
		return time.Since(t)
	}
	for b.Loop() {
		// The baseline: the raw snapshot write, then reading it back, then each compressor in a
		// pipe over that same stream.
		m.rawStandby += standby(false, "")
		m.rawBytes = fileSize(b, raw)
		m.catRaw += timeCommand(b, raw, os.DevNull, "cat")
		out := b.TempDir()
		m.cliPipe += timeCommand(b, raw, filepath.Join(out, "cli.lz4"), lz4cli, "-1", "-q", "-c", "--no-frame-crc")
		m.cliBytes = fileSize(b, filepath.Join(out, "cli.lz4"))
		m.oursPipe += timeCommand(b, raw, filepath.Join(out, "ours.lz4"), filepath.Join(pipeOurs, "lz4"), "-1", "-q", "-c")
		m.oursPipeBytes = fileSize(b, filepath.Join(out, "ours.lz4"))
		_ = os.RemoveAll(out)
		m.rawRestore += restore()

		// The streamed standby with the project's compressor in QEMU's pipe instead of lz4.
		m.oursStreamStandby += standby(true, pipeOurs+":"+origPath)
		m.oursBytes = fileSize(b, compressed)
		restore()

		// lz4 with its default 4 MiB blocks in the pipe, instead of the driver's 64 KiB.
		m.bigBlocksStandby += standby(true, bigBlocks+":"+origPath)
		restore()

		// The streamed standby and restore through lz4, and lz4 -d of the same snapshot.
		m.streamStandby += standby(true, "")
		m.streamSnapshot += time.Duration(logs.last("standby complete")["snapshot_ms"].(int64)) * time.Millisecond
		m.streamBytes = fileSize(b, compressed)
		m.lz4d += timeCommand(b, compressed, os.DevNull, lz4cli, "-d", "-q", "-c")
		m.streamRestore += restore()
		m.restorePhase += time.Duration(logs.last("restored")["restore_ms"].(int64)) * time.Millisecond
	}
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return float64(d.Milliseconds()) / n }
	b.ReportMetric(ms(m.rawStandby), "raw-standby-ms")
	b.ReportMetric(ms(m.streamStandby), "standby-ms")
	b.ReportMetric(m.streamStandby.Seconds()/m.rawStandby.Seconds(), "standby/raw-standby")
	b.ReportMetric(ms(m.oursStreamStandby), "standby-go-compressor-ms")
	b.ReportMetric(ms(m.bigBlocksStandby), "standby-lz4-B7-ms")
	b.ReportMetric(ms(m.lz4d), "lz4-d-ms")
	b.ReportMetric(ms(m.streamRestore), "restore-ms")
	b.ReportMetric(m.streamRestore.Seconds()/m.lz4d.Seconds(), "restore/lz4-d")
	b.ReportMetric(ms(m.catRaw), "cat-raw-ms")
	b.ReportMetric(ms(m.rawRestore), "raw-restore-ms")
	b.ReportMetric(float64(m.rawBytes)/mib, "raw-MiB")
	b.ReportMetric(float64(m.streamBytes)/mib, "lz4-MiB")
	b.Logf("standby of a 2 GiB guest holding %d MiB of live data: %.0f ms streamed through lz4 (snapshot phase %.0f ms), %.2fx the raw snapshot write alone (%.0f ms, %.0f MiB; reading it back with cat: %.0f ms)",
		2*fillChunks*fillChunk/units.MiB, ms(m.streamStandby), ms(m.streamSnapshot), m.streamStandby.Seconds()/m.rawStandby.Seconds(), ms(m.rawStandby), float64(m.rawBytes)/mib, ms(m.catRaw))
	b.Logf("restore of the same guest (manager, SetState Running: restore and resume): %.0f ms streamed from lz4 -d (of which QEMU's start and load %.0f ms), %.2fx lz4 -d of the same %.0f MiB snapshot to /dev/null (%.0f ms); restore of the raw snapshot: %.0f ms",
		ms(m.streamRestore), ms(m.restorePhase), m.streamRestore.Seconds()/m.lz4d.Seconds(), float64(m.streamBytes)/mib, ms(m.lz4d), ms(m.rawRestore))
	b.Logf("compressor in a pipe over the same raw stream: lz4 -1 %.0f ms → %.0f MiB; the project's (Go, %d workers) %.0f ms → %.0f MiB (time ours/lz4 %.2f); in QEMU's pipe: standby %.0f ms → %.0f MiB with lz4, %.0f ms → %.0f MiB with the project's",
		ms(m.cliPipe), float64(m.cliBytes)/mib, runtime.GOMAXPROCS(0), ms(m.oursPipe), float64(m.oursPipeBytes)/mib, m.oursPipe.Seconds()/m.cliPipe.Seconds(),
		ms(m.streamStandby), float64(m.streamBytes)/mib, ms(m.oursStreamStandby), float64(m.oursBytes)/mib)
	b.Logf("block size of lz4 in QEMU's pipe: standby %.0f ms with 64 KiB blocks (-B4, the driver's), %.0f ms with lz4's default 4 MiB (-B7)", ms(m.streamStandby), ms(m.bigBlocksStandby))
	if err := env.m.Delete(ctx, inst.ID); err != nil {
		b.Fatal(err)
	}

	// Free-page reporting: the same guest once it has freed all but 128 MiB of its live data.
	spec.Name = "snapfreed"
	spec.Entrypoint = []string{"/bin/sh", "-c", fillScript(true)}
	freed, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		b.Fatal(err)
	}
	waitConsoleLine(b, env, freed, "freed", 10*time.Minute)
	time.Sleep(10 * time.Second) // the guest reports freed pages every 2 s
	env.m.opts.CompressSnapshots = false
	if _, err := env.m.SetState(ctx, freed.ID, Standby); err != nil {
		b.Fatal(err)
	}
	freedRaw := fileSize(b, filepath.Join(freed.Dir, "snapshots", "snapshot-latest", "memory-ranges"))
	if _, err := env.m.SetState(ctx, freed.ID, Running); err != nil {
		b.Fatal(err)
	}
	env.m.opts.CompressSnapshots = true
	if _, err := env.m.SetState(ctx, freed.ID, Standby); err != nil {
		b.Fatal(err)
	}
	freedLZ4 := fileSize(b, filepath.Join(freed.Dir, "snapshots", "snapshot-latest", "memory-ranges.lz4"))
	b.ReportMetric(float64(freedRaw)/mib, "freed-raw-MiB")
	b.ReportMetric(float64(freedRaw)/float64(m.rawBytes), "freed/kept-raw")
	b.Logf("free-page reporting: after freeing %d MiB the raw snapshot is %.0f MiB (%.0f MiB compressed), against %.0f MiB (%.0f MiB compressed) with the data kept",
		2*(fillChunks-1)*fillChunk/units.MiB, float64(freedRaw)/mib, float64(freedLZ4)/mib, float64(m.rawBytes)/mib, float64(m.streamBytes)/mib)
	if err := env.m.Delete(ctx, freed.ID); err != nil {
		b.Fatal(err)
	}
}

func fileSize(b *testing.B, p string) int64 {
	b.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

// timeCommand runs argv with src on its standard input and dst as its standard output, and
// returns how long it took.
func timeCommand(b *testing.B, src, dst string, argv ...string) time.Duration {
	b.Helper()
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = in.Close() }()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = out.Close() }()
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, out, &stderr
	t := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s: %v %s", strings.Join(argv, " "), err, stderr.Bytes())
	}
	return time.Since(t)
}

// waitConsoleLine waits for a line of the guest's console that is exactly line.
func waitConsoleLine(b *testing.B, env *testEnv, inst *Instance, line string, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(line) + `\r?$`)
	for !re.Match(env.console(b, inst)) {
		if time.Now().After(deadline) {
			b.Fatalf("the guest did not print %q in %s", line, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// wrapLZ4 returns a directory holding an executable named lz4 that runs the real one with extra
// arguments last, where they override the driver's; put first on PATH, it puts them in QEMU's pipe.
func wrapLZ4(b *testing.B, real string, extra ...string) string {
	b.Helper()
	dir := b.TempDir()
	script := fmt.Sprintf("#!/bin/sh\nexec '%s' \"$@\" %s\n", real, strings.Join(extra, " "))
	if err := os.WriteFile(filepath.Join(dir, "lz4"), []byte(script), 0o755); err != nil {
		b.Fatal(err)
	}
	return dir
}

const pipeHelperEnv = "HYPEMAN_LZ4_PIPE"

// oursAsLZ4 returns a directory holding an executable named lz4 that takes the lz4 tool's
// arguments as the QEMU driver passes them and runs the project's own compressor (this test
// binary as TestLZ4PipeHelper) instead: put first on PATH, it puts it in QEMU's pipe.
func oursAsLZ4(b *testing.B) string {
	b.Helper()
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	script := fmt.Sprintf(`#!/bin/sh
case " $* " in
*" -d "*) for last; do :; done; %[1]s=d exec '%[2]s' -test.run='^TestLZ4PipeHelper$' < "$last" ;;
esac
%[1]s=c exec '%[2]s' -test.run='^TestLZ4PipeHelper$'
`, pipeHelperEnv, self)
	if err := os.WriteFile(filepath.Join(dir, "lz4"), []byte(script), 0o755); err != nil {
		b.Fatal(err)
	}
	return dir
}

// TestLZ4PipeHelper is not a test of its own: run by oursAsLZ4's script, it compresses (or
// decompresses) its standard input onto its standard output with the project's LZ4 code.
func TestLZ4PipeHelper(t *testing.T) {
	mode := os.Getenv(pipeHelperEnv)
	if mode == "" {
		return
	}
	if err := pipe(mode == "d"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func pipe(decompress bool) error {
	if decompress {
		zr, err := compress.NewReader(os.Stdin)
		if err != nil {
			return err
		}
		_, err = io.Copy(os.Stdout, zr)
		return err
	}
	zw, err := compress.NewWriter(os.Stdout)
	if err != nil {
		return err
	}
	if _, err := io.Copy(zw, os.Stdin); err != nil {
		return err
	}
	return zw.Close()
}
