package instances

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network/netnstest"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/qemu"
)

// The networked tests run whole, registry and guests included, in a network namespace of their
// own (netnstest.Enter): the bridge, TAPs, NAT and every packet stay inside it. Guests boot one
// after the other; at most two run at once.

// serverScript serves "hello from NAME" on port 80 of the guest, prints what the init gave the
// guest, and, once a second, asks the peer guest's server when PEER is set, and the gateway's
// ports 8080 and 53 when GW is set.
const serverScript = `mkdir -p /www && echo "hello from $(hostname)" > /www/index.html
/bin/busybox httpd -p 80 -h /www
echo "ADDR<$(/bin/busybox ip -o -4 address show dev eth0 | tr -s ' ' | cut -d' ' -f4)>"
echo "ROUTE<$(/bin/busybox ip route show default)>"
echo "RESOLV<$(cat /etc/resolv.conf)>"
while :; do
	[ -z "$PEER" ] || echo "PEER-REPLY<$(printf 'GET / HTTP/1.0\r\n\r\n' | /bin/busybox nc -w 2 "$PEER" 80 | tail -n 1)>"
	[ -z "$GW" ] || echo "GATEWAY<http=$(/bin/busybox nc -w 2 "$GW" 8080 </dev/null | head -n 1) dns=$(/bin/busybox nc -w 2 "$GW" 53 </dev/null | head -n 1)>"
	sleep 1
done`

func (env *testEnv) serverSpec(name string, peer string) Spec {
	spec := env.spec(name)
	spec.Entrypoint = []string{"/bin/sh", "-c", serverScript}
	if peer != "" {
		spec.Env = map[string]string{"PEER": peer, "GW": "10.100.0.1"}
	}
	return spec
}

// serveBanner answers every TCP connection to addr with one line, banner, until the test ends.
func serveBanner(t *testing.T, addr, banner string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(banner + "\n"))
			_ = c.Close()
		}
	}()
}

// networkManager makes a Manager on the host network cfg; wrap, if set, wraps its VMM driver.
func (env *testEnv) networkManager(t *testing.T, cfg network.Config, wrap func(vmm.Driver) vmm.Driver) *Manager {
	t.Helper()
	cfg.Enabled = true
	return env.manager(t, func(o *Options) {
		o.Network = cfg
		if wrap != nil {
			o.Drivers[0] = wrap(o.Drivers[0])
		}
	})
}

// ipLink is what ip reports about one interface of the namespace.
type ipLink struct {
	Name   string `json:"ifname"`
	Master string `json:"master"`
}

// tapOf returns the interface name, or false when the namespace has none of that name.
func tapOf(t *testing.T, name string) (ipLink, bool) {
	t.Helper()
	out, err := exec.Command("ip", "-json", "link", "show", "dev", name).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "does not exist") {
			return ipLink{}, false
		}
		t.Fatalf("ip link show %s: %v: %s", name, err, out)
	}
	var links []ipLink
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("ip link show %s: %v: %s", name, err, out)
	}
	return links[0], true
}

func assertTapOnBridge(t *testing.T, inst *Instance, bridge string) {
	t.Helper()
	l, ok := tapOf(t, inst.TapDevice)
	if !ok || l.Master != bridge {
		t.Fatalf("TAP %q of %s: present %v, attached to %q; want it on %s", inst.TapDevice, inst.Name, ok, l.Master, bridge)
	}
}

func assertNoTap(t *testing.T, name string) {
	t.Helper()
	if _, ok := tapOf(t, name); ok {
		t.Fatalf("TAP %s is still there", name)
	}
}

// assertServesAsBefore checks that inst kept the address, MAC and TAP it had as before, that its
// TAP is on the bridge, and that its server answers at that address.
func assertServesAsBefore(t *testing.T, inst, before *Instance) {
	t.Helper()
	if inst.IPAddress != before.IPAddress || inst.MACAddress != before.MACAddress || inst.TapDevice != before.TapDevice {
		t.Fatalf("%s now has %s %s %s, before %s %s %s", inst.Name, inst.IPAddress, inst.MACAddress, inst.TapDevice, before.IPAddress, before.MACAddress, before.TapDevice)
	}
	assertTapOnBridge(t, inst, "vmbr0")
	if got := fetch(t, inst.IPAddress); got != "hello from "+inst.Name+"\n" {
		t.Fatalf("the server of %s at %s answered %q", inst.Name, inst.IPAddress, got)
	}
}

// fetch asks the guest's server at ip from the namespace's host side until it answers.
func fetch(t *testing.T, ip string) string {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get("http://" + ip + "/")
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				return string(body)
			}
			err = fmt.Errorf("status %s, %v", resp.Status, rerr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest's server at %s did not answer: %v", ip, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// neighbourMAC is the MAC the namespace's host side learnt for ip.
func neighbourMAC(t *testing.T, ip string) string {
	t.Helper()
	out, err := exec.Command("ip", "-json", "neigh", "show", ip).Output()
	if err != nil {
		t.Fatal(err)
	}
	var neigh []struct {
		MAC string `json:"lladdr"`
	}
	if err := json.Unmarshal(out, &neigh); err != nil || len(neigh) == 0 {
		t.Fatalf("no neighbour entry for %s: %v %s", ip, err, out)
	}
	return neigh[0].MAC
}

// waitConsole waits until the console after offset holds want.
func (env *testEnv) waitConsole(t *testing.T, inst *Instance, offset int, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(string(env.console(t, inst)[min(offset, env.consoleLen(t, inst)):]), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the console of %s:\n%s", want, inst.Name, env.console(t, inst))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func leasedIPs(t *testing.T, m *Manager) []string {
	t.Helper()
	leases, err := m.net.Leases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, l := range leases {
		ips = append(ips, l.IP.String())
	}
	return ips
}

func TestInstancesOnTheHostNetwork(t *testing.T) {
	t.Parallel()
	if !netnstest.Enter(t) {
		return
	}
	env := newTestEnv(t)
	ctx := testContext(t)
	// The gateway is one of the name servers, so guests may reach its port 53 and nothing else of
	// the host.
	env.m = env.networkManager(t, network.Config{DNS: []string{"10.100.0.1", "10.100.0.54"}}, nil)
	m := env.m
	var a, b *Instance
	top := t // what outlives one step
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow() // later steps build on this one
		}
	}

	step("two instances get distinct addresses and serve on them, isolated from each other and the host", func(t *testing.T) {
		var err error
		if b, err = m.Create(ctx, env.serverSpec("netb", ""), Running); err != nil {
			t.Fatal(err)
		}
		serveBanner(top, "10.100.0.1:8080", "host-http")
		serveBanner(top, "10.100.0.1:53", "host-dns")
		if a, err = m.Create(ctx, env.serverSpec("neta", b.IPAddress), Running); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				out, _ := exec.Command("nft", "list", "ruleset").CombinedOutput()
				t.Logf("rules:\n%s\nconsole of %s:\n%s", out, a.Name, env.console(t, a))
			}
		})
		if b.IPAddress != "10.100.0.2" || a.IPAddress != "10.100.0.3" || a.MACAddress == b.MACAddress || a.TapDevice == b.TapDevice {
			t.Fatalf("addresses: a %s %s %s, b %s %s %s", a.IPAddress, a.MACAddress, a.TapDevice, b.IPAddress, b.MACAddress, b.TapDevice)
		}
		for _, inst := range []*Instance{a, b} {
			assertTapOnBridge(t, inst, "vmbr0")
			if got := fetch(t, inst.IPAddress); got != "hello from "+inst.Name+"\n" {
				t.Fatalf("the server of %s at %s answered %q", inst.Name, inst.IPAddress, got)
			}
			if mac := neighbourMAC(t, inst.IPAddress); mac != inst.MACAddress {
				t.Fatalf("%s answers from MAC %s, want %s", inst.IPAddress, mac, inst.MACAddress)
			}
			env.waitConsole(t, inst, 0, "ADDR<"+inst.IPAddress+"/16>")
			env.waitConsole(t, inst, 0, "ROUTE<default via 10.100.0.1 dev eth0")
			env.waitConsole(t, inst, 0, "RESOLV<nameserver 10.100.0.1\nnameserver 10.100.0.54>")
		}
		env.waitConsole(t, a, 0, "PEER-REPLY<>")
		env.waitConsole(t, a, 0, "GATEWAY<http= dns=host-dns>")
		if c := string(env.console(t, a)); strings.Contains(c, "PEER-REPLY<hello") || strings.Contains(c, "host-http") {
			t.Fatalf("a guest reached another guest or a host service it should not:\n%s", c)
		}
	})

	step("a shared peer group lets them reach each other at once, without a restart", func(t *testing.T) {
		offset := env.consoleLen(t, a)
		for _, inst := range []*Instance{a, b} {
			spec := env.serverSpec(inst.Name, "")
			if inst == a {
				spec = env.serverSpec(inst.Name, b.IPAddress)
			}
			spec.Network = &NetworkSpec{PeerGroups: []string{"web", "web"}}
			got, err := m.Update(ctx, inst.ID, spec)
			if err != nil {
				t.Fatal(err)
			}
			if got.PID != inst.PID || !slices.Equal(got.PeerGroups, []string{"web"}) {
				t.Fatalf("after the update %s has pid %d (was %d) and peer groups %q", inst.Name, got.PID, inst.PID, got.PeerGroups)
			}
		}
		env.waitConsole(t, a, offset, "PEER-REPLY<hello from netb>")
		env.waitConsole(t, a, offset, "GATEWAY<http= dns=host-dns>") // the host stays closed
	})

	step("standby and restore keep the address, MAC and TAP, and the server answers again", func(t *testing.T) {
		inst, err := m.SetState(ctx, b.ID, Standby)
		if err != nil {
			t.Fatal(err)
		}
		assertNoTap(t, b.TapDevice)
		if inst.IPAddress != b.IPAddress || inst.MACAddress != b.MACAddress || inst.TapDevice != b.TapDevice {
			t.Fatalf("in Standby: %s %s %s, want %s %s %s", inst.IPAddress, inst.MACAddress, inst.TapDevice, b.IPAddress, b.MACAddress, b.TapDevice)
		}
		if inst, err = m.SetState(ctx, b.ID, Running); err != nil {
			t.Fatal(err)
		}
		assertServesAsBefore(t, inst, b)
		offset := env.consoleLen(t, a)
		env.waitConsole(t, a, offset, "PEER-REPLY<hello from netb>")
	})

	step("stop and start keep the address", func(t *testing.T) {
		if _, err := m.SetState(ctx, b.ID, Stopped); err != nil {
			t.Fatal(err)
		}
		assertNoTap(t, b.TapDevice)
		inst, err := m.SetState(ctx, b.ID, Running)
		if err != nil {
			t.Fatal(err)
		}
		assertServesAsBefore(t, inst, b)
	})

	step("a VMM killed out of band is repaired with the same address over its leftover TAP", func(t *testing.T) {
		if err := syscall.Kill(a.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for env.state(t, a.ID) != Stopped {
			if time.Now().After(deadline) {
				t.Fatal("the killed VMM is not seen as Stopped")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, ok := tapOf(t, a.TapDevice); !ok {
			t.Fatal("a killed VMM's TAP should be left behind for the repair to replace")
		}
		inst, err := m.SetState(ctx, a.ID, Running)
		if err != nil {
			t.Fatal(err)
		}
		assertServesAsBefore(t, inst, a)
	})

	step("orphaned TAPs and leases are found and removed, live ones kept", func(t *testing.T) {
		stopped, err := m.Create(ctx, env.serverSpec("netstopped", ""), Stopped)
		if err != nil {
			t.Fatal(err)
		}
		const gone = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
		for owner, tap := range map[string]string{stopped.ID: stopped.TapDevice, gone: network.TapName(gone)} {
			if err := m.net.CreateTap(ctx, tap, owner, ""); err != nil {
				t.Fatal(err)
			}
		}
		lease, err := m.net.Allocate(ctx, gone, network.Request{})
		if err != nil {
			t.Fatal(err)
		}
		removed, err := m.RemoveNetworkOrphans(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(removed)
		want := []string{"lease " + lease.IP.String(), "tap " + stopped.TapDevice, "tap " + network.TapName(gone)}
		slices.Sort(want)
		if !slices.Equal(removed, want) {
			t.Fatalf("removed %q, want %q", removed, want)
		}
		assertNoTap(t, stopped.TapDevice)
		assertTapOnBridge(t, a, "vmbr0")
		assertTapOnBridge(t, b, "vmbr0")
		if ips := leasedIPs(t, m); slices.Contains(ips, lease.IP.String()) || !slices.Contains(ips, stopped.IPAddress) {
			t.Fatalf("leases after the sweep: %v", ips)
		}
		if err := m.Delete(ctx, stopped.ID); err != nil {
			t.Fatal(err)
		}
	})

	step("delete removes the TAP and frees the address for the next create", func(t *testing.T) {
		env.deleteAndCheckGone(t, a)
		assertNoTap(t, a.TapDevice)
		if ips := leasedIPs(t, m); !slices.Equal(ips, []string{b.IPAddress}) {
			t.Fatalf("leases after deleting %s: %v", a.Name, ips)
		}
		c, err := m.Create(ctx, env.serverSpec("netc", ""), Stopped)
		if err != nil {
			t.Fatal(err)
		}
		if c.IPAddress != a.IPAddress {
			t.Fatalf("the next create got %s, want the freed %s", c.IPAddress, a.IPAddress)
		}
		env.deleteAndCheckGone(t, c)
		env.deleteAndCheckGone(t, b)
		assertNoTap(t, b.TapDevice)
		if ips := leasedIPs(t, m); len(ips) != 0 {
			t.Fatalf("leases after deleting everything: %v", ips)
		}
		rules, err := exec.Command("nft", "list", "ruleset").CombinedOutput()
		if err != nil || strings.Contains(string(rules), a.TapDevice) || strings.Contains(string(rules), b.TapDevice) {
			t.Fatalf("the isolation rules still name a deleted instance's TAP (%v):\n%s", err, rules)
		}
	})
}

func TestNetworkedCreatesNeverShareAnAddressAndFailuresLeaveNothing(t *testing.T) {
	t.Parallel()
	if !netnstest.Enter(t) {
		return
	}
	env := newTestEnv(t)
	ctx := testContext(t)
	cfg := network.Config{Enabled: true, Bridge: "hmtest0", Subnet: "10.101.0.0/24"}

	t.Run("concurrent creates in several goroutines and two processes", func(t *testing.T) {
		m := env.networkManager(t, cfg, nil)
		helpers := startCreateHelpers(t, m.DataDir(), cfg, 2)
		var mu sync.Mutex
		var ips []string
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				inst, err := m.Create(ctx, env.serverSpec(fmt.Sprintf("conc-%d", i), ""), Stopped)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ips = append(ips, inst.IPAddress)
				mu.Unlock()
			}()
		}
		wg.Wait()
		ips = append(ips, helpers()...)
		if len(ips) != 4+2*createHelperCount {
			t.Fatalf("%d creates succeeded: %v", len(ips), ips)
		}
		seen := map[string]bool{}
		for _, ip := range ips {
			if seen[ip] {
				t.Fatalf("%s handed out twice: %v", ip, ips)
			}
			seen[ip] = true
		}
		list, err := m.List(ctx)
		if err != nil || len(list) != len(ips) {
			t.Fatalf("List: %d instances, %v", len(list), err)
		}
	})

	t.Run("a create that fails after its TAP was made leaves no TAP and no lease", func(t *testing.T) {
		var saw struct {
			sync.Mutex
			tap string
		}
		failing := func(d vmm.Driver) vmm.Driver {
			return &bootFailDriver{Driver: d, boot: func(cfg vmm.Config) error {
				saw.Lock()
				defer saw.Unlock()
				if cfg.Net == nil {
					return errors.New("the VMM config has no network device")
				}
				if l, ok := tapOf(t, cfg.Net.Tap); !ok || l.Master != "hmtest0" {
					return fmt.Errorf("TAP %s is not on the bridge when the VMM starts", cfg.Net.Tap)
				}
				saw.tap = cfg.Net.Tap
				return errors.New("injected: the VMM failed after its TAP was made")
			}}
		}
		m := env.networkManager(t, cfg, failing)
		_, err := m.Create(ctx, env.serverSpec("failnet", ""), Running)
		if err == nil || !strings.Contains(err.Error(), "injected") {
			t.Fatalf("create error = %v; want the injected failure", err)
		}
		if saw.tap == "" {
			t.Fatal("the VMM never saw a TAP")
		}
		assertNoTap(t, saw.tap)
		assertNoInstanceLeft(t, m, "failnet")
		if ips := leasedIPs(t, m); len(ips) != 0 {
			t.Fatalf("a failed create kept the leases %v", ips)
		}
		if _, err := m.Create(ctx, env.serverSpec("taken", ""), Stopped); err != nil {
			t.Fatal(err)
		}
		spec := env.serverSpec("clash", "")
		spec.Network = &NetworkSpec{IP: "10.101.0.2"}
		if _, err := m.Create(ctx, spec, Stopped); !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, network.ErrAddressInUse) || !strings.Contains(err.Error(), "ip 10.101.0.2 belongs to instance") {
			t.Fatalf("a create asking for a taken address: %v", err)
		}
		assertNoInstanceLeftNamed(t, m, "clash")
	})
}

// assertNoInstanceLeftNamed checks that no instance of that name exists on m.
func assertNoInstanceLeftNamed(t *testing.T, m *Manager, name string) {
	t.Helper()
	if _, err := m.Get(context.Background(), name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("instance %s: %v, want ErrNotFound", name, err)
	}
}

// bootFailDriver hands each boot to boot instead of starting a VMM.
type bootFailDriver struct {
	vmm.Driver
	boot func(vmm.Config) error
}

func (d *bootFailDriver) Boot(_ context.Context, _ host.Host, cfg vmm.Config) (int, error) {
	return 0, d.boot(cfg)
}

// The create helper is this test binary re-executed (inside the caller's namespace) to create
// instances from another process on the same data directory.
const (
	createHelperEnv   = "HYPEMAN_CREATE_HELPER"
	createHelperCount = 3
)

// startCreateHelpers starts n helper processes; the returned function waits for them and
// returns the addresses their instances got.
func startCreateHelpers(t *testing.T, dataDir string, cfg network.Config, n int) func() []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	job, err := json.Marshal(createHelperJob{DataDir: dataDir, Image: shared.image, Network: cfg})
	if err != nil {
		t.Fatal(err)
	}
	type helper struct {
		cmd *exec.Cmd
		out *strings.Builder
	}
	var helpers []helper
	for i := range n {
		cmd := exec.Command(exe, "-test.run", "^TestCreateHelperProcess$", "-test.v")
		cmd.Env = append(os.Environ(), createHelperEnv+"="+string(job), fmt.Sprintf("HYPEMAN_CREATE_HELPER_PREFIX=proc%d", i))
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		helpers = append(helpers, helper{cmd, out})
	}
	return func() []string {
		var ips []string
		for i, h := range helpers {
			err := h.cmd.Wait()
			found := 0
			for _, line := range strings.Split(h.out.String(), "\n") {
				if ip, ok := strings.CutPrefix(line, "CREATED "); ok {
					ips = append(ips, strings.TrimSpace(ip))
					found++
				}
			}
			if err != nil || found != createHelperCount {
				t.Fatalf("create helper %d: %v, %d instances:\n%s", i, err, found, h.out)
			}
		}
		return ips
	}
}

type createHelperJob struct {
	DataDir string
	Image   string
	Network network.Config
}

// TestCreateHelperProcess is not a test of its own: it is the create helper of
// TestNetworkedCreatesNeverShareAnAddressAndFailuresLeaveNothing, and does nothing unless that
// test started it.
func TestCreateHelperProcess(t *testing.T) {
	v := os.Getenv(createHelperEnv)
	if v == "" {
		return
	}
	var job createHelperJob
	if err := json.Unmarshal([]byte(v), &job); err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{
		Host: host.Local{}, DataDir: job.DataDir, Network: job.Network,
		Drivers: []vmm.Driver{qemu.New()}, DefaultHypervisor: "qemu",
	})
	if err != nil {
		t.Fatal(err)
	}
	prefix := os.Getenv("HYPEMAN_CREATE_HELPER_PREFIX")
	for i := range createHelperCount {
		spec := Spec{Name: fmt.Sprintf("%s-%d", prefix, i), Image: job.Image, VCPUs: 1, Memory: MinMemory, OverlaySize: MinOverlay}
		inst, err := m.Create(context.Background(), spec, Stopped)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("CREATED %s\n", inst.IPAddress)
	}
}
