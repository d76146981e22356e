package cloudhypervisor

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/cloudhypervisor/chstandin"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// A harness runs the driver against the stand-in, either as real processes (the stand-in binary
// started through host.Local) or in this process (a Host whose processes are stand-in servers).
type harness interface {
	driver() *Driver
	host() host.Host
	// setFaults sets the faults of the VMMs started from now on.
	setFaults(faults string)
	// violations lists the requests the VMMs found outside the API spec.
	violations() []string
	// alive reports whether any process whose command line contains marker is still running.
	alive(marker string) bool
	// argv is the command line of the running VMM with pid.
	argv(pid int) []string
}

var harnesses = map[string]func(t *testing.T, mode chstandin.Mode) harness{
	"binary":    newBinaryHarness,
	"inprocess": newInProcessHarness,
}

// forEachHarness runs test for every harness and every stand-in mode.
func forEachHarness(t *testing.T, test func(t *testing.T, hn harness)) {
	for _, name := range []string{"inprocess", "binary"} {
		for _, mode := range chstandin.Modes {
			t.Run(name+"/"+mode.String(), func(t *testing.T) {
				hn := harnesses[name](t, mode)
				t.Cleanup(func() {
					if v := hn.violations(); len(v) > 0 {
						t.Errorf("the driver sent requests outside the API spec:\n%s", strings.Join(v, "\n"))
					}
				})
				test(t, hn)
			})
		}
	}
}

type binaryHarness struct {
	t    *testing.T
	d    *Driver
	dirs *[]string
}

func newBinaryHarness(t *testing.T, mode chstandin.Mode) harness {
	t.Setenv(chstandin.ModeEnv, string(mode))
	t.Setenv(chstandin.FaultsEnv, "")
	return &binaryHarness{t: t, d: &Driver{Binary: chstandin.BuildBinary(t)}, dirs: &[]string{}}
}

func (b *binaryHarness) driver() *Driver         { return b.d }
func (b *binaryHarness) host() host.Host         { return host.Local{} }
func (b *binaryHarness) setFaults(faults string) { b.t.Setenv(chstandin.FaultsEnv, faults) }

// violations reads the stand-in's own log lines from every instance directory's VMM output.
func (b *binaryHarness) violations() []string {
	var out []string
	for _, dir := range *b.dirs {
		data, _ := os.ReadFile(filepath.Join(dir, logName))
		out = append(out, chstandin.LogViolations(data)...)
	}
	return out
}

// alive looks for a live process whose command line contains marker.
func (b *binaryHarness) alive(marker string) bool {
	return len(testutil.ProcessesMentioning(marker)) > 0
}

// killProcessesOf kills the processes this test started for an instance directory: those whose
// command line names it.
func killProcessesOf(t *testing.T, dir string) {
	for _, p := range testutil.Processes() {
		if p.Mentions(dir + "/") {
			t.Logf("killing pid %d left running: %s", p.PID, p)
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
}

// inProcessHost is host.Local, except that the programs it starts are stand-in servers in this
// process, with made-up pids.
type inProcessHost struct {
	host.Local
	t    *testing.T
	mode chstandin.Mode

	mu      sync.Mutex
	faults  string
	nextPid int
	vmms    map[int]*inProcessVMM
	relays  map[int]*inProcessRelay
}

// inProcessRelay does what the console relay's tail does: it appends the serial file to the
// console log as it grows, starts over when the file is truncated, and stops after its VMM.
type inProcessRelay struct {
	argv []string
	stop chan struct{}
	done chan struct{}
}

type inProcessVMM struct {
	argv []string
	srv  *chstandin.Server
}

// fakeBinary is the executable name the in-process host recognises.
const fakeBinary = "cloud-hypervisor-in-process"

type inProcessHarness struct {
	h *inProcessHost
	d *Driver
}

func newInProcessHarness(t *testing.T, mode chstandin.Mode) harness {
	h := &inProcessHost{t: t, mode: mode, nextPid: 1 << 22, vmms: map[int]*inProcessVMM{}, relays: map[int]*inProcessRelay{}}
	t.Cleanup(func() {
		// VMMs first, then their relays, which stop after them; without h.mu, which relays take.
		h.mu.Lock()
		var servers []*chstandin.Server
		var relays []*inProcessRelay
		for _, v := range h.vmms {
			servers = append(servers, v.srv)
		}
		for _, r := range h.relays {
			relays = append(relays, r)
		}
		h.mu.Unlock()
		for _, srv := range servers {
			srv.Kill()
			<-srv.Exited()
		}
		for _, r := range relays {
			<-r.done
		}
	})
	return &inProcessHarness{h: h, d: &Driver{Binary: fakeBinary}}
}

func (p *inProcessHarness) driver() *Driver { return p.d }
func (p *inProcessHarness) host() host.Host { return p.h }

func (p *inProcessHarness) setFaults(faults string) {
	p.h.mu.Lock()
	defer p.h.mu.Unlock()
	p.h.faults = faults
}

func (p *inProcessHarness) violations() []string {
	p.h.mu.Lock()
	defer p.h.mu.Unlock()
	var out []string
	for _, v := range p.h.vmms {
		out = append(out, v.srv.Violations()...)
	}
	return out
}

func (p *inProcessHarness) alive(marker string) bool {
	for pid := range p.pids() {
		if alive, _ := p.h.ProcessAlive(context.Background(), pid, marker); alive {
			return true
		}
	}
	return false
}

func (p *inProcessHarness) pids() map[int]bool {
	p.h.mu.Lock()
	defer p.h.mu.Unlock()
	pids := map[int]bool{}
	for pid := range p.h.vmms {
		pids[pid] = true
	}
	for pid := range p.h.relays {
		pids[pid] = true
	}
	return pids
}

func (h *inProcessHost) Run(ctx context.Context, stdin io.Reader, argv ...string) ([]byte, error) {
	if len(argv) == 2 && argv[0] == fakeBinary && argv[1] == "--version" {
		return []byte(h.mode.VersionLine() + "\n"), nil
	}
	return h.Local.Run(ctx, stdin, argv...)
}

func (h *inProcessHost) LookPath(ctx context.Context, name string) (string, error) {
	if name == fakeBinary {
		return name, nil
	}
	return h.Local.LookPath(ctx, name)
}

func (h *inProcessHost) StartDetached(_ context.Context, argv []string, logPath string) (int, error) {
	if len(argv) == 7 && argv[0] == "sh" && argv[2] == relayScript {
		return h.startRelay(argv, logPath)
	}
	if len(argv) == 0 || argv[0] != fakeBinary {
		return 0, fmt.Errorf("the in-process host only starts %s and the console relay, not %q", fakeBinary, argv)
	}
	cl, err := chstandin.ParseCommandLine(argv[1:])
	if err != nil {
		return 0, err
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return 0, err
	}
	h.t.Cleanup(func() { _ = logFile.Close() })
	h.mu.Lock()
	defer h.mu.Unlock()
	faults, err := chstandin.ParseFaults(h.faults)
	if err != nil {
		return 0, err
	}
	h.nextPid++
	pid := h.nextPid
	started := &inProcessVMM{argv: argv}
	h.vmms[pid] = started
	srv, err := chstandin.New(chstandin.Options{Mode: h.mode, Faults: faults, Pid: pid, Log: logFile})
	if err != nil {
		return 0, err
	}
	started.srv = srv
	// The socket appears once the "process" has started (slow-start delays it) and bound it.
	go func() {
		select {
		case <-time.After(faults.StartDelay):
		case <-srv.Exited(): // killed before it bound its socket
			return
		}
		l, err := chstandin.Listen(cl.SocketPath, h.mode)
		if err != nil {
			// Like a VMM that exits 1 at start.
			_, _ = fmt.Fprintf(logFile, "Error: Cloud Hypervisor exited with the following chain of errors:\n  0: %v\n", err)
			srv.Kill()
			return
		}
		_ = srv.Serve(l)
	}()
	return pid, nil
}

func (h *inProcessHost) startRelay(argv []string, logPath string) (int, error) {
	vmmPid, err := strconv.Atoi(argv[4])
	if err != nil {
		return 0, err
	}
	serial := argv[5]
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return 0, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextPid++
	r := &inProcessRelay{argv: argv, stop: make(chan struct{}), done: make(chan struct{})}
	h.relays[h.nextPid] = r
	go func() {
		defer close(r.done)
		defer func() { _ = out.Close() }()
		var offset int
		for {
			h.mu.Lock()
			vmmGone := !h.running(vmmPid)
			h.mu.Unlock()
			if data, err := os.ReadFile(serial); err == nil {
				if len(data) < offset {
					offset = 0
				}
				_, _ = out.Write(data[offset:])
				offset = len(data)
			}
			if vmmGone {
				return
			}
			select {
			case <-r.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return h.nextPid, nil
}

// running is ProcessAlive without the marker; h.mu is held.
func (h *inProcessHost) running(pid int) bool {
	v, ok := h.vmms[pid]
	if !ok {
		return false
	}
	select {
	case <-v.srv.Exited():
		return false
	default:
		return true
	}
}

func (h *inProcessHost) ProcessAlive(_ context.Context, pid int, marker string) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r, ok := h.relays[pid]; ok {
		select {
		case <-r.done:
			return false, nil
		default:
			return strings.Contains(strings.Join(r.argv, "\x00"), marker), nil
		}
	}
	v, ok := h.vmms[pid]
	return ok && h.running(pid) && strings.Contains(strings.Join(v.argv, "\x00"), marker), nil
}

func (h *inProcessHost) Signal(_ context.Context, pid int, sig syscall.Signal) error {
	h.mu.Lock()
	v, ok := h.vmms[pid]
	r, isRelay := h.relays[pid]
	h.mu.Unlock()
	if isRelay && (sig == syscall.SIGKILL || sig == syscall.SIGTERM) {
		select {
		case <-r.stop:
		default:
			close(r.stop)
		}
		return nil
	}
	if !ok {
		return nil
	}
	switch sig {
	case syscall.SIGKILL:
		v.srv.Kill()
	case syscall.SIGTERM, syscall.SIGINT:
		v.srv.Terminate()
	}
	return nil
}

// instance is one instance directory with the files a VM config names.
type instance struct {
	cfg vmm.Config
}

func newInstance(t *testing.T, hn harness, hotplug int64) instance {
	t.Helper()
	dir := testutil.ShortTempDir(t)
	if b, ok := hn.(*binaryHarness); ok {
		*b.dirs = append(*b.dirs, dir)
		// VMMs run detached: a test that does not quit its VMM must not leave it running.
		t.Cleanup(func() { killProcessesOf(t, dir) })
	}
	write := func(name string, size int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	return instance{cfg: vmm.Config{
		Dir:          dir,
		Kernel:       write("vmlinux", 4096),
		Initrd:       write("initrd", 4096),
		Cmdline:      "console=ttyS0 panic=-1",
		VCPUs:        2,
		MemoryBytes:  256 * mib,
		HotplugBytes: hotplug,
		Disks: []vmm.Disk{
			{Path: write("rootfs.erofs", 1<<20), Serial: "hypeman-rootfs", ReadOnly: true},
			{Path: write("overlay.raw", 1<<20), Serial: "hypeman-overlay"},
		},
		ConsoleLog:  filepath.Join(dir, "logs", "console.log"),
		Accelerator: "kvm",
	}}
}

// argv is the command line the VMM with pid was started with.
func (b *binaryHarness) argv(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		b.t.Fatalf("command line of pid %d: %v", pid, err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
}

func (p *inProcessHarness) argv(pid int) []string {
	p.h.mu.Lock()
	defer p.h.mu.Unlock()
	if v, ok := p.h.vmms[pid]; ok {
		return v.argv
	}
	return nil
}
