package instances

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"golang.org/x/sync/errgroup"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// These tests drive the manager over a real OpenSSH server on 127.0.0.1. The host is this
// machine, so the tests check what the manager did with the os package, as the local tests do.

// dialSSH connects to the fixture the way the provider connects to a host.
func dialSSH(t testing.TB, d *testutil.SSHD) *host.SSH {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := host.DialSSH(ctx, host.SSHConfig{
		Address: d.URL(), PrivateKeyFile: d.ClientKeyFile, KnownHostsFile: d.KnownHostsFile,
		SSHConfigFile: "none", DisableAgent: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// newSSHTestEnv is the package's test environment with the manager reaching its host over SSH.
func newSSHTestEnv(t testing.TB, wrap func(host.Host) host.Host) (*testEnv, *testutil.SSHD, *host.SSH) {
	t.Helper()
	env := newTestEnv(t)
	d := testutil.StartSSHD(t)
	s := dialSSH(t, d)
	var h host.Host = s
	if wrap != nil {
		h = wrap(s)
	}
	env.m = env.manager(t, func(o *Options) { o.Host = h })
	return env, d, s
}

func TestLifecycleOverSSH(t *testing.T) {
	t.Parallel()
	env, _, s := newSSHTestEnv(t, nil)
	ctx := testContext(t)
	spec := env.spec("over-ssh")
	spec.Entrypoint = []string{"/bin/sh", "-c", `if [ -f /root/kept ]; then echo "KEPT<$(cat /root/kept)>"; fi; echo "written" > /root/kept; sync; ` + counterScript}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	if inst.State != Running {
		t.Fatalf("created in %s", inst.State)
	}
	last := env.waitCount(t, inst, 3, 0)

	if inst, err = env.m.SetState(ctx, inst.ID, Standby); err != nil || inst.State != Standby || inst.SnapshotBytes <= 0 {
		t.Fatalf("standby: %v, %+v", err, inst)
	}
	if n := countVMMs(t, inst.Dir); n != 0 {
		t.Fatalf("%d VMM processes for a Standby instance", n)
	}
	before := consoleCounts(t, inst)
	offset := env.consoleLen(t, inst)
	if inst, err = env.m.SetState(ctx, inst.ID, Running); err != nil || inst.State != Running {
		t.Fatalf("restore: %v, %+v", err, inst)
	}
	env.waitCount(t, inst, last+3, offset)
	if first := firstCountAfter(t, inst, offset); first <= before[len(before)-1] {
		t.Fatalf("the guest rebooted instead of continuing: %d before standby, %d after", before[len(before)-1], first)
	}
	if bytes.Count(env.console(t, inst), []byte(system.MarkerStarted)) != 1 {
		t.Fatalf("the program started twice:\n%s", env.console(t, inst))
	}

	if inst, err = env.m.SetState(ctx, inst.ID, Stopped); err != nil || inst.State != Stopped {
		t.Fatalf("stop: %v, %+v", err, inst)
	}
	offset = env.consoleLen(t, inst)
	if inst, err = env.m.SetState(ctx, inst.ID, Running); err != nil || inst.State != Running {
		t.Fatalf("start: %v, %+v", err, inst)
	}
	env.waitCount(t, inst, 1, offset)
	if !bytes.Contains(env.console(t, inst)[offset:], []byte("KEPT<written>")) {
		t.Fatalf("the overlay lost the file written before the stop:\n%s", env.console(t, inst)[offset:])
	}

	list, err := env.m.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != inst.ID || list[0].State != Running {
		t.Fatalf("List over SSH: %v, %+v", err, list)
	}
	env.deleteAndCheckGone(t, inst)
	if n := s.Handshakes(); n != 1 {
		t.Fatalf("%d SSH handshakes for one lifecycle, want 1", n)
	}
}

// killHost is a host that stops the SSH server when the flow reaches a chosen call.
type killHost struct {
	host.Host
	when func(op, path string) bool
	kill func()
	once sync.Once
}

func (k *killHost) at(op, p string) {
	if k.when(op, p) {
		k.once.Do(k.kill)
	}
}

func (k *killHost) MkdirAll(ctx context.Context, p string, perm fs.FileMode) error {
	k.at("mkdir", p)
	return k.Host.MkdirAll(ctx, p, perm)
}

func (k *killHost) Create(ctx context.Context, p string) (io.WriteCloser, error) {
	k.at("create", p)
	return k.Host.Create(ctx, p)
}

func (k *killHost) Stat(ctx context.Context, p string) (fs.FileInfo, error) {
	k.at("stat", p)
	return k.Host.Stat(ctx, p)
}

func TestSSHDKilledDuringStandbyLeavesTheVMWhereTheNextGetFindsIt(t *testing.T) {
	t.Parallel()
	points := []struct {
		name string
		when func(op, path string) bool
	}{
		{"after the pause", func(op, p string) bool { return op == "mkdir" && strings.HasSuffix(p, ".partial") }},
		// QEMU's stream is compressed on the host as it is written; the driver then waits for it.
		{"while the compressed snapshot is written", func(op, p string) bool { return op == "stat" && strings.HasSuffix(p, ".lz4") }},
	}
	for _, point := range points {
		t.Run(point.name, func(t *testing.T) {
			kh := &killHost{when: point.when}
			env, d, _ := newSSHTestEnv(t, func(h host.Host) host.Host { kh.Host = h; return kh })
			kh.kill = func() { d.Stop(t) }
			ctx := testContext(t)
			spec := env.spec("cut")
			spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
			inst, err := env.m.Create(ctx, spec, Running)
			if err != nil {
				t.Fatal(err)
			}
			last := env.waitCount(t, inst, 3, 0)

			_, err = env.m.SetState(ctx, inst.ID, Standby)
			if !errors.Is(err, host.ErrConnectionLost) {
				t.Fatalf("standby with the SSH server killed: %v, want an error wrapping ErrConnectionLost", err)
			}
			t.Logf("standby failed as it should: %v", err)
			// Counted by QEMU's own socket path: the host's lock helper, cut off from its session,
			// also names the instance directory until it notices the hang-up.
			if n := countVMMs(t, filepath.Join(inst.Dir, "qmp.sock")); n != 1 {
				t.Fatalf("%d VMM processes after the cut, want the one that runs the guest", n)
			}
			if _, err := env.m.Get(ctx, inst.ID); err == nil {
				t.Fatal("Get succeeded with the SSH server down")
			}

			d.Start(t)
			got, err := env.m.Get(ctx, inst.ID)
			if err != nil {
				t.Fatal(err)
			}
			switch got.State {
			case Running, Paused, Standby:
			default:
				t.Fatalf("after the cut the instance is %s (%s), want Running, Paused or Standby", got.State, got.StateReason)
			}
			t.Logf("the next Get says %s", got.State)
			offset := env.consoleLen(t, inst)
			if got, err = env.m.SetState(ctx, inst.ID, Running); err != nil || got.State != Running {
				t.Fatalf("back to Running: %v, %+v", err, got)
			}
			env.waitCount(t, inst, last+3, offset)
			if bytes.Count(env.console(t, inst), []byte(system.MarkerStarted)) != 1 {
				t.Fatalf("the guest was lost and booted again:\n%s", env.console(t, inst))
			}
			env.deleteAndCheckGone(t, inst)
		})
	}
}

// BenchmarkRefreshOverSSH refreshes 30 Standby instances through the local host and through SSH
// to the same machine, in one run, two ways: one List, and a Get per instance, ten at a time, as
// Terraform's refresh reads resources. Reported: ssh/local time of each (goal ≤ 2) and SSH
// handshakes per refresh (goal: none after the first connection).
//
// One instance is really put in Standby; the other 29 are copies of its directory (metadata
// rewritten with a new id and name, the big files hard-linked), which a refresh cannot tell
// apart from instances that booted, and which saves 29 boots.
func BenchmarkRefreshOverSSH(b *testing.B) {
	env := newTestEnv(b)
	ctx := context.Background()
	spec := env.spec("refresh-00")
	spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
	inst, err := env.m.Create(ctx, spec, Standby)
	if err != nil {
		b.Fatal(err)
	}
	ids := []string{inst.ID}
	for i := 1; i < 30; i++ {
		id := ulid.Make().String()
		cloneInstance(b, env.m.DataDir(), inst, id, fmt.Sprintf("refresh-%02d", i))
		ids = append(ids, id)
	}
	d := testutil.StartSSHD(b)
	s := dialSSH(b, d)
	local := env.m
	remote := env.manager(b, func(o *Options) { o.Host = s; o.DataDir = local.DataDir() })

	list := func(m *Manager) time.Duration {
		t0 := time.Now()
		all, err := m.List(ctx)
		elapsed := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		if len(all) != 30 {
			b.Fatalf("List found %d instances, want 30", len(all))
		}
		for _, in := range all {
			if in.State != Standby {
				b.Fatalf("%s is %s (%s), want Standby", in.Name, in.State, in.StateReason)
			}
		}
		return elapsed
	}
	gets := func(m *Manager) time.Duration {
		t0 := time.Now()
		var g errgroup.Group
		g.SetLimit(10) // terraform's default parallelism
		for _, id := range ids {
			g.Go(func() error {
				in, err := m.Get(ctx, id)
				if err == nil && in.State != Standby {
					err = fmt.Errorf("%s is %s (%s), want Standby", in.Name, in.State, in.StateReason)
				}
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	list(local) // warm both paths: page cache, and the one connection
	list(remote)
	handshakes := s.Handshakes()
	var localList, sshList, localGets, sshGets time.Duration
	n := 0
	for b.Loop() {
		localList += list(local)
		sshList += list(remote)
		localGets += gets(local)
		sshGets += gets(remote)
		n++
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) / 1000 }
	b.ReportMetric(ms(localList), "local-list-ms")
	b.ReportMetric(ms(sshList), "ssh-list-ms")
	b.ReportMetric(sshList.Seconds()/localList.Seconds(), "list-ssh/local")
	b.ReportMetric(ms(localGets), "local-30-gets-ms")
	b.ReportMetric(ms(sshGets), "ssh-30-gets-ms")
	b.ReportMetric(sshGets.Seconds()/localGets.Seconds(), "gets-ssh/local")
	b.ReportMetric(float64(s.Handshakes()-handshakes)/float64(n), "handshakes/refresh")
	b.ReportMetric(float64(s.Handshakes()), "handshakes-total")
}

// cloneInstance copies the instance directory of src as a new instance id/name: metadata is
// rewritten, every other file hard-linked.
func cloneInstance(b *testing.B, dataDir string, src *Instance, id, name string) {
	b.Helper()
	dst := filepath.Join(dataDir, "guests", id)
	err := filepath.WalkDir(src.Dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src.Dir, p)
		to := filepath.Join(dst, rel)
		switch {
		case e.IsDir():
			return os.MkdirAll(to, 0o750)
		case rel == "metadata.json":
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			var md map[string]any
			if err := json.Unmarshal(bytes.ReplaceAll(data, []byte(src.ID), []byte(id)), &md); err != nil {
				return err
			}
			md["name"] = name
			out, err := json.Marshal(md)
			if err != nil {
				return err
			}
			return os.WriteFile(to, out, 0o640)
		case e.Type()&fs.ModeSocket != 0:
			return nil
		default:
			return os.Link(p, to)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := os.Symlink(id, filepath.Join(dataDir, "names", name)); err != nil {
		b.Fatal(err)
	}
}
