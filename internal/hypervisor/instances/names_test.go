package instances

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/oklog/ulid/v2"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network/netnstest"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/qemu"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// These tests race creates of one name in separate processes against one data directory, and
// kill a create half-way, the way two terraform runs and a double Ctrl-C do. Every create stops
// at Stopped, so no VM boots: a create is an image pull and an overlay.

// nameTestManager is a manager on dataDir reached through h, with a VMM driver that is never
// started.
func nameTestManager(t testing.TB, dataDir string, h host.Host, cfg network.Config) *Manager {
	t.Helper()
	m, err := New(Options{
		Host: h, DataDir: dataDir, Network: cfg,
		Drivers: []vmm.Driver{qemu.New()}, DefaultHypervisor: "qemu",
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// ociTestImage writes the busybox test image as an OCI layout and returns its reference, after
// converting it once into m's image cache so that the creates under test find it cached.
func ociTestImage(t *testing.T, m *Manager) string {
	t.Helper()
	testutil.RequireTool(t, "mkfs.erofs")
	testutil.RequireTool(t, "mkfs.ext4")
	dir := t.TempDir()
	testutil.WriteOCILayout(t, dir, testutil.BusyboxImage(t), "")
	ref := "oci:" + dir
	if _, err := m.images.Pull(testContext(t), ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

func nameTestSpec(name, image string) Spec {
	return Spec{Name: name, Image: image, VCPUs: 1, Memory: MinMemory, OverlaySize: MinOverlay}
}

// nameHelperJob is what a create helper process does: one Create(spec, Stopped) on DataDir.
type nameHelperJob struct {
	DataDir string
	Name    string
	Image   string
	Network network.Config
	SSH     *sshLogin // nil: the local host
}

type sshLogin struct{ URL, KeyFile, KnownHostsFile string }

func sshLoginOf(d *testutil.SSHD) *sshLogin {
	return &sshLogin{URL: d.URL(), KeyFile: d.ClientKeyFile, KnownHostsFile: d.KnownHostsFile}
}

// helperResult is the create's outcome as the helper reports it.
type helperResult struct {
	ID            string // the instance, when the create succeeded
	Error         string
	NameTaken     bool // errors.Is(err, ErrNameTaken)
	BeingCreated  bool // errors.Is(err, ErrNameBeingCreated)
	ExitedWithout bool `json:"-"` // the process ended without reporting
}

const nameHelperEnv = "HYPEMAN_NAME_HELPER"

// TestNameHelperProcess is not a test of its own: it is the create helper of the tests in this
// file, and does nothing unless one of them started it. It says READY once its manager is made,
// waits for a line on standard input, creates, and prints RESULT and the outcome as JSON.
func TestNameHelperProcess(t *testing.T) {
	v := os.Getenv(nameHelperEnv)
	if v == "" {
		return
	}
	var job nameHelperJob
	if err := json.Unmarshal([]byte(v), &job); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var h host.Host = host.Local{}
	if job.SSH != nil {
		s, err := host.DialSSH(ctx, host.SSHConfig{
			Address: job.SSH.URL, PrivateKeyFile: job.SSH.KeyFile, KnownHostsFile: job.SSH.KnownHostsFile,
			SSHConfigFile: "none", DisableAgent: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.Close() }()
		h = s
	}
	m := nameTestManager(t, job.DataDir, h, job.Network)
	fmt.Println("READY")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	var res helperResult
	inst, err := m.Create(ctx, nameTestSpec(job.Name, job.Image), Stopped)
	if err != nil {
		res.Error = err.Error()
		res.NameTaken = errors.Is(err, ErrNameTaken)
		res.BeingCreated = errors.Is(err, ErrNameBeingCreated)
	} else {
		res.ID = inst.ID
	}
	b, _ := json.Marshal(res)
	fmt.Printf("RESULT %s\n", b)
}

// nameHelper is one running create helper.
type nameHelper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	ready  chan struct{}
	result chan helperResult

	mu  sync.Mutex
	out strings.Builder // everything it printed, for failure messages
}

func startNameHelper(t *testing.T, job nameHelperJob) *nameHelper {
	t.Helper()
	b, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	h := &nameHelper{ready: make(chan struct{}), result: make(chan helperResult, 1)}
	h.cmd = exec.Command(os.Args[0], "-test.run=^TestNameHelperProcess$", "-test.count=1")
	h.cmd.Env = append(os.Environ(), nameHelperEnv+"="+string(b))
	h.cmd.Stderr = &lockedWriter{h}
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if h.stdin, err = h.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.cmd.Process.Kill(); _ = h.cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(stdout)
		reported := false
		for sc.Scan() {
			line := sc.Text()
			h.mu.Lock()
			h.out.WriteString(line + "\n")
			h.mu.Unlock()
			switch {
			case line == "READY":
				close(h.ready)
			case strings.HasPrefix(line, "RESULT "):
				var res helperResult
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "RESULT ")), &res); err == nil {
					reported = true
					h.result <- res
				}
			}
		}
		if !reported {
			h.result <- helperResult{ExitedWithout: true}
		}
	}()
	return h
}

type lockedWriter struct{ h *nameHelper }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	return w.h.out.Write(p)
}

func (h *nameHelper) output() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.out.String()
}

func (h *nameHelper) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-h.ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("the create helper did not get ready:\n%s", h.output())
	}
}

// create lets the helper's create begin.
func (h *nameHelper) create(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(h.stdin, "go\n"); err != nil {
		t.Fatalf("start the helper's create: %v\n%s", err, h.output())
	}
}

func (h *nameHelper) wait(t *testing.T) helperResult {
	t.Helper()
	var res helperResult
	select {
	case res = <-h.result:
	case <-time.After(60 * time.Second):
		t.Fatalf("the create helper did not report:\n%s", h.output())
	}
	if res.ExitedWithout {
		t.Fatalf("the create helper ended without reporting:\n%s", h.output())
	}
	return res
}

// leftovers are what a round of raceCreates finds the name held by before it starts: nothing,
// a link to an instance whose directory is gone, or what a killed create left.
var leftovers = []string{"nothing", "a dangling link", "a killed create"}

// plantLeftover makes the name held by what leftovers[kind] says; it returns the directory
// of a killed create, "" for the others.
func plantLeftover(t *testing.T, m *Manager, name string, kind int) string {
	t.Helper()
	ctx := context.Background()
	id := ulid.Make().String()
	switch leftovers[kind] {
	case "a dangling link":
		if err := os.Symlink(id, filepath.Join(m.DataDir(), "names", name)); err != nil {
			t.Fatal(err)
		}
	case "a killed create":
		if err := os.MkdirAll(m.layout.logs(id), 0o750); err != nil {
			t.Fatal(err)
		}
		// A creator that recorded no boot id: only its lock, which nobody holds, speaks for it.
		md := &metadata{ID: id, Name: name, Hypervisor: "qemu", Creating: &creator{PID: 1, Since: time.Now().UTC()}}
		if err := m.saveMetadata(ctx, md); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(id, filepath.Join(m.DataDir(), "names", name)); err != nil {
			t.Fatal(err)
		}
		return m.layout.dir(id)
	}
	return ""
}

// raceCreates runs rounds of two helper processes creating job.Name at once, the name held by
// each of the leftovers in turn. Each round exactly one must succeed, the other must be refused
// with ErrNameTaken in the words for the case it hit, the leftover must be gone, and exactly one
// instance of the name must be on the host; the winner is then deleted.
func raceCreates(t *testing.T, m *Manager, job nameHelperJob, rounds int) {
	ctx := testContext(t)
	words := map[string]int{}
	if err := os.MkdirAll(filepath.Join(job.DataDir, "names"), 0o750); err != nil {
		t.Fatal(err)
	}
	for round := range rounds {
		kind := round % len(leftovers)
		leftover := plantLeftover(t, m, job.Name, kind)
		at := fmt.Sprintf("round %d, the name held by %s", round, leftovers[kind])
		a, b := startNameHelper(t, job), startNameHelper(t, job)
		a.waitReady(t)
		b.waitReady(t)
		a.create(t)
		b.create(t)
		ra, rb := a.wait(t), b.wait(t)
		switch {
		case ra.ID != "" && rb.ID != "":
			t.Fatalf("%s: both creates of %q succeeded: %s and %s", at, job.Name, ra.ID, rb.ID)
		case ra.ID == "" && rb.ID == "":
			t.Fatalf("%s: neither create succeeded:\n%s\n%s", at, ra.Error, rb.Error)
		case ra.ID == "":
			ra, rb = rb, ra
		}
		winner, loser := ra, rb
		busy := fmt.Sprintf("name %q is being created by another operation (instance %s", job.Name, winner.ID)
		taken := fmt.Sprintf("name %q is taken by instance %s", job.Name, winner.ID)
		switch {
		case !loser.NameTaken:
			t.Fatalf("%s: the losing create failed with %q, not ErrNameTaken", at, loser.Error)
		case strings.Contains(loser.Error, busy) && loser.BeingCreated:
			words["being created"]++
		case strings.Contains(loser.Error, taken) && !loser.BeingCreated:
			words["taken"]++
		default:
			t.Fatalf("%s: the losing create said %q; want %q or %q", at, loser.Error, busy, taken)
		}
		if leftover != "" {
			if _, err := os.Stat(leftover); !os.IsNotExist(err) {
				t.Fatalf("%s: the killed create's directory is still there: %v", at, err)
			}
		}

		list, err := m.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].ID != winner.ID || list[0].Name != job.Name || list[0].State != Stopped {
			t.Fatalf("%s: List after the race = %s; want only %s, Stopped; on disk:\n%s", at, describeList(list), winner.ID, describeGuests(job.DataDir))
		}
		if entries, _ := os.ReadDir(filepath.Join(job.DataDir, "guests")); len(entries) != 1 {
			t.Fatalf("%s: %d instance directories after the race, want 1", at, len(entries))
		}
		if err := m.Delete(ctx, winner.ID); err != nil {
			t.Fatal(err)
		}
		assertNameFree(t, job.DataDir, job.Name)
	}
	t.Logf("in %d rounds the losing create found the name %v", rounds, words)
}

// describeGuests lists the data directory's instance directories with their metadata, for a
// failure message.
func describeGuests(dataDir string) string {
	var b strings.Builder
	entries, err := os.ReadDir(filepath.Join(dataDir, "guests"))
	if err != nil {
		return err.Error()
	}
	for _, e := range entries {
		md, err := os.ReadFile(filepath.Join(dataDir, "guests", e.Name(), "metadata.json"))
		fmt.Fprintf(&b, "%s: %s %v\n", e.Name(), md, err)
	}
	links, _ := os.ReadDir(filepath.Join(dataDir, "names"))
	for _, l := range links {
		target, _ := os.Readlink(filepath.Join(dataDir, "names", l.Name()))
		fmt.Fprintf(&b, "names/%s -> %s\n", l.Name(), target)
	}
	return b.String()
}

func describeList(list []*Instance) string {
	var s []string
	for _, inst := range list {
		s = append(s, fmt.Sprintf("%s %s %s (%s)", inst.ID, inst.Name, inst.State, inst.StateReason))
	}
	return "[" + strings.Join(s, "; ") + "]"
}

// assertNameFree checks that no instance directory and no reservation of name is left.
func assertNameFree(t *testing.T, dataDir, name string) {
	t.Helper()
	if entries, _ := os.ReadDir(filepath.Join(dataDir, "guests")); len(entries) != 0 {
		t.Fatalf("instance directories left: %v", entries)
	}
	if _, err := os.Lstat(filepath.Join(dataDir, "names", name)); !os.IsNotExist(err) {
		t.Fatalf("name %s still reserved: %v", name, err)
	}
}

func TestConcurrentCreatesOfOneNameInTwoProcessesMakeOneInstance(t *testing.T) {
	dataDir := testutil.ShortTempDir(t)
	m := nameTestManager(t, dataDir, host.Local{}, network.Config{})
	image := ociTestImage(t, m)
	raceCreates(t, m, nameHelperJob{DataDir: dataDir, Name: "twin", Image: image}, 8*len(leftovers))
}

func TestConcurrentCreatesOfOneNameOverSSHMakeOneInstance(t *testing.T) {
	d := testutil.StartSSHD(t)
	dataDir := testutil.ShortTempDir(t)
	m := nameTestManager(t, dataDir, dialSSH(t, d), network.Config{})
	image := ociTestImage(t, m)
	raceCreates(t, m, nameHelperJob{DataDir: dataDir, Name: "twin-ssh", Image: image, SSH: sshLoginOf(d)}, len(leftovers))
}

// hangingRegistry serves the busybox test image, except that asking for a manifest never gets
// an answer: a create pulling from it stays in its pull until the process is killed. asked
// receives once per manifest request.
func hangingRegistry(t *testing.T) (ref string, asked <-chan struct{}) {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	ch := make(chan struct{}, 16)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/manifests/") && r.Method != http.MethodPut {
			select {
			case ch <- struct{}{}:
			default:
			}
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	return strings.TrimPrefix(srv.URL, "http://") + "/test/hang:latest", ch
}

// startFakeVMM starts a process whose command line names dir, as a VMM's does, and which ends on
// SIGTERM; it stands for the VMM a create left running when it was killed after the boot.
func startFakeVMM(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "while :; do sleep 1; done", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	return cmd
}

func reservation(t *testing.T, dataDir, name string) string {
	t.Helper()
	id, err := os.Readlink(filepath.Join(dataDir, "names", name))
	if err != nil {
		t.Fatalf("the reservation of %s: %v", name, err)
	}
	return id
}

// pretendVMMStarted records pid as the VMM of the unfinished instance id, as a create killed
// after the boot leaves its metadata.
func pretendVMMStarted(t *testing.T, m *Manager, id string, pid int) {
	t.Helper()
	md, err := m.loadMetadata(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	md.PID, md.Booted, md.StartedAt = pid, true, time.Now().UTC()
	if err := m.saveMetadata(context.Background(), md); err != nil {
		t.Fatal(err)
	}
}

func leaseOwners(t *testing.T, m *Manager) []string {
	t.Helper()
	if m.net == nil {
		return nil
	}
	leases, err := m.net.Leases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var owners []string
	for _, l := range leases {
		owners = append(owners, l.Owner)
	}
	return owners
}

// interruptCreate starts a helper whose create of name hangs in its image pull, waits until it
// holds the name, and returns it with the id it reserved the name for.
func interruptCreate(t *testing.T, job nameHelperJob, hangRef string, asked <-chan struct{}) (*nameHelper, string) {
	t.Helper()
	job.Image = hangRef
	h := startNameHelper(t, job)
	h.waitReady(t)
	h.create(t)
	select {
	case <-asked:
	case res := <-h.result:
		t.Fatalf("the helper's create ended before its pull: %+v\n%s", res, h.output())
	case <-time.After(30 * time.Second):
		t.Fatalf("the helper's create never asked the registry:\n%s", h.output())
	}
	return h, reservation(t, job.DataDir, job.Name)
}

// testInterruptedCreate checks, on m's host, that a live create keeps its name against a second
// create, and that once it is killed its leftovers are reported as such and removed by the next
// create of the name (reclaim) or by Delete.
func testInterruptedCreate(t *testing.T, m *Manager, job nameHelperJob) {
	ctx := testContext(t)
	image := ociTestImage(t, m)
	hangRef, asked := hangingRegistry(t)
	if m.net != nil {
		// Now, so that the orphan sweep of the first networked create has run before: the
		// leases checked below are released by the flows under test, not by the sweep.
		if err := m.ensureNetwork(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, removal := range []string{"create", "delete"} {
		t.Run("removed by "+removal, func(t *testing.T) {
			h, dead := interruptCreate(t, job, hangRef, asked)
			deadDir := filepath.Join(job.DataDir, "guests", dead)
			if m.net != nil && !slices.Contains(leaseOwners(t, m), dead) {
				t.Fatalf("the hanging create holds no lease: %v", leaseOwners(t, m))
			}

			t0 := time.Now()
			_, err := m.Create(ctx, nameTestSpec(job.Name, image), Stopped)
			busy := fmt.Sprintf("name %q is being created by another operation (instance %s", job.Name, dead)
			if !errors.Is(err, ErrNameBeingCreated) || !errors.Is(err, ErrNameTaken) || !strings.Contains(err.Error(), busy) {
				t.Fatalf("a create while another one holds the name: %v; want ErrNameBeingCreated saying %q", err, busy)
			}
			if d := time.Since(t0); d > 10*time.Second {
				t.Fatalf("the refused create took %s", d)
			}
			if got := reservation(t, job.DataDir, job.Name); got != dead {
				t.Fatalf("the live create's name now points at %s", got)
			}
			if _, err := os.Stat(deadDir); err != nil {
				t.Fatalf("the live create's directory: %v", err)
			}
			if entries, _ := os.ReadDir(filepath.Join(job.DataDir, "guests")); len(entries) != 1 {
				t.Fatalf("%d instance directories, want the live create's alone", len(entries))
			}
			if _, err := m.Get(ctx, job.Name); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get of a name being created: %v, want ErrNotFound", err)
			}
			if list, err := m.List(ctx); err != nil || len(list) != 0 {
				t.Fatalf("List while a create runs: %v %s; want nothing", err, describeList(list))
			}
			if err := m.Delete(ctx, job.Name); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Delete of a name being created: %v, want ErrNotFound", err)
			}
			if _, err := os.Stat(deadDir); err != nil {
				t.Fatalf("Delete removed a live create's directory: %v", err)
			}

			if err := h.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = h.cmd.Wait()
			// Over SSH the host releases the dead process's lock once it sees the connection end.
			var inst *Instance
			_ = poll.Within(ctx, 20*time.Second, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
				inst, err = m.Get(ctx, job.Name)
				return !errors.Is(err, ErrNotFound), nil
			})
			if err != nil || inst.ID != dead || inst.State != Unknown || !strings.Contains(inst.StateReason, "its create (pid ") || !strings.Contains(inst.StateReason, "was interrupted") {
				t.Fatalf("Get of a killed create: %v %+v; want it Unknown, saying it was interrupted", err, inst)
			}
			if list, err := m.List(ctx); err != nil || len(list) != 1 || list[0].ID != dead || list[0].State != Unknown {
				t.Fatalf("List after the create was killed: %v %s", err, describeList(list))
			}
			if _, err := m.SetState(ctx, job.Name, Running); !errors.Is(err, ErrInvalidState) || !strings.Contains(err.Error(), "was never completely created") {
				t.Fatalf("SetState on a killed create: %v; want ErrInvalidState", err)
			}
			vmm := startFakeVMM(t, deadDir)
			pretendVMMStarted(t, m, dead, vmm.Process.Pid)

			switch removal {
			case "create":
				inst, err = m.Create(ctx, nameTestSpec(job.Name, image), Stopped)
				if err != nil {
					t.Fatalf("a create of the name of a killed create: %v", err)
				}
				if got := reservation(t, job.DataDir, job.Name); got != inst.ID || inst.ID == dead {
					t.Fatalf("the name points at %s; the new instance is %s, the killed create's %s", got, inst.ID, dead)
				}
				if list, err := m.List(ctx); err != nil || len(list) != 1 || list[0].ID != inst.ID || list[0].State != Stopped {
					t.Fatalf("List after the reclaim: %v %s", err, describeList(list))
				}
			case "delete":
				if err := m.Delete(ctx, job.Name); err != nil {
					t.Fatalf("Delete of a killed create: %v", err)
				}
				assertNameFree(t, job.DataDir, job.Name)
			}
			if _, err := os.Stat(deadDir); !os.IsNotExist(err) {
				t.Fatalf("the killed create's directory is still there: %v", err)
			}
			if n := len(testutil.ProcessesMentioning(deadDir)); n != 0 {
				t.Fatalf("the killed create's VMM still runs (%d processes)", n)
			}
			if owners := leaseOwners(t, m); slices.Contains(owners, dead) {
				t.Fatalf("the killed create's lease is still there: %v", owners)
			}
			if removal == "create" {
				if m.net != nil && !slices.Equal(leaseOwners(t, m), []string{inst.ID}) {
					t.Fatalf("leases %v; want the new instance's alone", leaseOwners(t, m))
				}
				if err := m.Delete(ctx, inst.ID); err != nil {
					t.Fatal(err)
				}
				assertNameFree(t, job.DataDir, job.Name)
			}
		})
	}
}

func TestInterruptedCreateIsReclaimedAndALiveOneIsNot(t *testing.T) {
	t.Parallel()
	if !netnstest.Enter(t) {
		return
	}
	cfg := network.Config{Enabled: true, Bridge: "hmname0", Subnet: "10.102.0.0/24"}
	dataDir := testutil.ShortTempDir(t)
	m := nameTestManager(t, dataDir, host.Local{}, cfg)
	testInterruptedCreate(t, m, nameHelperJob{DataDir: dataDir, Name: "phoenix", Network: cfg})
}

func TestInterruptedCreateOverSSHIsReclaimedAndALiveOneIsNot(t *testing.T) {
	d := testutil.StartSSHD(t)
	dataDir := testutil.ShortTempDir(t)
	m := nameTestManager(t, dataDir, dialSSH(t, d), network.Config{})
	testInterruptedCreate(t, m, nameHelperJob{DataDir: dataDir, Name: "phoenix-ssh", SSH: sshLoginOf(d)})
}

func TestCreatorRunningTellsTheCreatingProcessFromAReusedPID(t *testing.T) {
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	start, ok := processStart(sleeper.Process.Pid)
	if !ok || start == 0 {
		t.Fatalf("no start time for pid %d", sleeper.Process.Pid)
	}
	self := thisProcess()
	if self.BootID == "" {
		t.Skip("no boot id on this machine")
	}
	other := *newCreator()
	other.PID, other.ProcessStart = sleeper.Process.Pid, start
	cases := []struct {
		name string
		c    creator
		want bool
	}{
		{"another live process of this machine", other, true},
		{"its pid, started at another time", func() creator { c := other; c.ProcessStart++; return c }(), false},
		{"a process of another boot", func() creator { c := other; c.BootID = "another-boot"; return c }(), false},
		{"a creator that recorded no boot", func() creator { c := other; c.BootID = ""; return c }(), false},
		{"this process, which the lock speaks for", *newCreator(), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.running(); got != tc.want {
				t.Fatalf("running() = %v, want %v", got, tc.want)
			}
		})
	}
	_ = sleeper.Process.Kill()
	_ = sleeper.Wait()
	if other.running() {
		t.Fatal("a dead creator is running")
	}
}

func TestANameHeldByADirectoryWithoutMetadataGoesByItsLock(t *testing.T) {
	dataDir := testutil.ShortTempDir(t)
	m := nameTestManager(t, dataDir, host.Local{}, network.Config{})
	image := ociTestImage(t, m)
	ctx := testContext(t)
	// What an older provider's create is until it writes its metadata, or a hand-made mess.
	id := ulid.Make().String()
	dir := filepath.Join(dataDir, "guests", id)
	for _, d := range []string{dir, filepath.Join(dataDir, "names")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(id, filepath.Join(dataDir, "names", "bare")); err != nil {
		t.Fatal(err)
	}

	unlock, err := host.Local{}.Lock(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Create(ctx, nameTestSpec("bare", image), Stopped)
	unlock()
	want := fmt.Sprintf("name %q is being created by another operation (instance %s)", "bare", id)
	if !errors.Is(err, ErrNameBeingCreated) || !strings.Contains(err.Error(), want) {
		t.Fatalf("create while the directory's lock is held: %v; want %q", err, want)
	}
	if got := reservation(t, dataDir, "bare"); got != id {
		t.Fatalf("the name moved to %s", got)
	}

	inst, err := m.Create(ctx, nameTestSpec("bare", image), Stopped)
	if err != nil {
		t.Fatalf("create once the directory's lock is free: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the directory without metadata is still there: %v", err)
	}
	if err := m.Delete(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	assertNameFree(t, dataDir, "bare")
}

func TestNameHolderSaysWhatACreateOfTheNameWouldMeet(t *testing.T) {
	dataDir := testutil.ShortTempDir(t)
	m := nameTestManager(t, dataDir, host.Local{}, network.Config{})
	image := ociTestImage(t, m)
	ctx := testContext(t)
	if err := os.MkdirAll(filepath.Join(dataDir, "names"), 0o750); err != nil {
		t.Fatal(err)
	}
	for kind, what := range leftovers {
		name := fmt.Sprintf("left-%d", kind)
		plantLeftover(t, m, name, kind)
		if holder, err := m.NameHolder(ctx, name); holder != "" || err != nil {
			t.Errorf("name held by %s: NameHolder = %q, %v; want it free for a create", what, holder, err)
		}
	}

	inst, err := m.Create(ctx, nameTestSpec("taken", image), Stopped)
	if err != nil {
		t.Fatal(err)
	}
	holder, err := m.NameHolder(ctx, "taken")
	if want := fmt.Sprintf("name %q is taken by instance %s", "taken", inst.ID); holder != inst.ID || !errors.Is(err, ErrNameTaken) ||
		errors.Is(err, ErrNameBeingCreated) || !strings.Contains(err.Error(), want) {
		t.Errorf("NameHolder of a finished instance = %q, %v; want %s and %q", holder, err, inst.ID, want)
	}

	// A create under way: the instance's lock is held, its metadata still marked creating.
	busy := plantLeftover(t, m, "busy", slices.Index(leftovers, "a killed create"))
	unlock, err := host.Local{}.Lock(ctx, filepath.Join(busy, ".lock"))
	if err != nil {
		t.Fatal(err)
	}
	holder, err = m.NameHolder(ctx, "busy")
	unlock()
	if holder != filepath.Base(busy) || !errors.Is(err, ErrNameBeingCreated) || !strings.Contains(err.Error(), "is being created by another operation") {
		t.Errorf("NameHolder of a name being created = %q, %v; want %s, ErrNameBeingCreated", holder, err, filepath.Base(busy))
	}
	if _, err := os.Stat(busy); err != nil {
		t.Errorf("NameHolder changed what it looked at: %v", err)
	}
	if got := reservation(t, dataDir, "busy"); got != filepath.Base(busy) {
		t.Errorf("the reservation moved to %s", got)
	}
}
