package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
)

// Leases are files on the host, so these tests need no network namespace.

// leaseHelperEnv makes the test binary a lease helper process (see TestMain): it allocates
// leaseHelperCount addresses in the directory the variable names and prints them.
const (
	leaseHelperEnv   = "HYPEMAN_LEASE_HELPER_DIR"
	leaseHelperCount = 20
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(leaseHelperEnv); dir != "" {
		os.Exit(leaseHelper(dir))
	}
	os.Exit(m.Run())
}

func leaseHelper(dir string) int {
	n, err := New(host.Local{}, Config{Enabled: true, Subnet: "10.9.0.0/24"}, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for i := range leaseHelperCount {
		l, err := n.Allocate(context.Background(), fmt.Sprintf("p%d-%d", os.Getpid(), i), Request{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(l.IP, l.MAC)
	}
	return 0
}

func newLeaseNetwork(t *testing.T, subnet string) *Network {
	t.Helper()
	n, err := New(host.Local{}, Config{Enabled: true, Subnet: subnet}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func allocate(t *testing.T, n *Network, owner string, req Request) Lease {
	t.Helper()
	l, err := n.Allocate(context.Background(), owner, req)
	if err != nil {
		t.Fatalf("allocate for %s: %v", owner, err)
	}
	return l
}

func TestAllocateHandsOutTheLowestFreeAddressAndReusesReleasedOnes(t *testing.T) {
	ctx := context.Background()
	n := newLeaseNetwork(t, "10.100.0.0/16")
	a := allocate(t, n, "A", Request{})
	b := allocate(t, n, "B", Request{})
	if a.IP != netip.MustParseAddr("10.100.0.2") || b.IP != netip.MustParseAddr("10.100.0.3") {
		t.Fatalf("first leases %s, %s; want 10.100.0.2 and .3 (.1 is the gateway)", a.IP, b.IP)
	}
	if a.MAC != "02:68:0a:64:00:02" || a.MAC == b.MAC {
		t.Fatalf("MACs %s, %s", a.MAC, b.MAC)
	}
	if again := allocate(t, n, "A", Request{}); again != a {
		t.Fatalf("a second allocation for the same owner gave %+v, want its lease %+v", again, a)
	}
	if err := n.Release(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	if err := n.Release(ctx, "A"); err != nil {
		t.Fatalf("releasing twice: %v", err)
	}
	if c := allocate(t, n, "C", Request{}); c.IP != a.IP || c.MAC != a.MAC {
		t.Fatalf("after A's release the next lease is %+v, want A's old %s", c, a.IP)
	}
	leases, err := n.Leases(ctx)
	if err != nil || len(leases) != 2 || leases[0].Owner != "C" || leases[1].Owner != "B" {
		t.Fatalf("leases %+v, %v", leases, err)
	}
}

func TestAllocateSkipsACustomGateway(t *testing.T) {
	n, err := New(host.Local{}, Config{Subnet: "10.5.0.0/30", Gateway: "10.5.0.1"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if l := allocate(t, n, "A", Request{}); l.IP != netip.MustParseAddr("10.5.0.2") {
		t.Fatalf("lease %s", l.IP)
	}
	if _, err := n.Allocate(context.Background(), "B", Request{}); !errors.Is(err, ErrSubnetFull) || !strings.Contains(err.Error(), "10.5.0.0/30") {
		t.Fatalf("a full /30: %v", err)
	}
	n2, _ := New(host.Local{}, Config{Subnet: "10.6.0.0/24", Gateway: "10.6.0.2"}, t.TempDir())
	first, second := allocate(t, n2, "A", Request{}), allocate(t, n2, "B", Request{})
	if first.IP != netip.MustParseAddr("10.6.0.1") || second.IP != netip.MustParseAddr("10.6.0.3") {
		t.Fatalf("leases around the gateway 10.6.0.2: %s, %s", first.IP, second.IP)
	}
}

func TestAllocateGivesRequestedAddresses(t *testing.T) {
	n := newLeaseNetwork(t, "10.100.0.0/16")
	l := allocate(t, n, "A", Request{IP: "10.100.7.9", MAC: "02:AA:BB:CC:DD:EE"})
	if l.IP != netip.MustParseAddr("10.100.7.9") || l.MAC != "02:aa:bb:cc:dd:ee" {
		t.Fatalf("lease %+v", l)
	}
	// C takes 10.100.0.2 with the MAC that D, next, would derive from 10.100.0.3.
	allocate(t, n, "C", Request{MAC: macFor(netip.MustParseAddr("10.100.0.3"))})
	d := allocate(t, n, "D", Request{})
	if d.IP != netip.MustParseAddr("10.100.0.3") || d.MAC == macFor(d.IP) || !strings.HasPrefix(d.MAC, "02:68:") {
		t.Fatalf("D's lease %+v: its derived MAC was taken, so it must get another one with the same prefix", d)
	}
}

func TestAllocateRefusesAddressesItCannotGive(t *testing.T) {
	n := newLeaseNetwork(t, "10.100.0.0/16")
	allocate(t, n, "A", Request{IP: "10.100.0.10", MAC: "02:00:00:00:00:10"})
	tests := []struct {
		name    string
		owner   string
		req     Request
		wantErr error
		want    string
	}{
		{"an address in use", "B", Request{IP: "10.100.0.10"}, ErrAddressInUse, "ip 10.100.0.10 belongs to instance A"},
		{"a MAC in use", "B", Request{MAC: "02:00:00:00:00:10"}, ErrAddressInUse, "mac 02:00:00:00:00:10 belongs to instance A"},
		{"the bridge's MAC", "B", Request{MAC: macFor(netip.MustParseAddr("10.100.0.1"))}, ErrAddressInUse, "belongs to the bridge"},
		{"an address outside the subnet", "B", Request{IP: "10.101.0.5"}, ErrInvalidAddress, `ip "10.101.0.5" is not an address of the subnet 10.100.0.0/16 that an instance can have (from 10.100.0.1 to 10.100.255.254, except the gateway 10.100.0.1)`},
		{"the gateway", "B", Request{IP: "10.100.0.1"}, ErrInvalidAddress, `ip "10.100.0.1"`},
		{"the network address", "B", Request{IP: "10.100.0.0"}, ErrInvalidAddress, `ip "10.100.0.0"`},
		{"the broadcast address", "B", Request{IP: "10.100.255.255"}, ErrInvalidAddress, `ip "10.100.255.255"`},
		{"not an address", "B", Request{IP: "ten"}, ErrInvalidAddress, `ip "ten"`},
		{"a multicast MAC", "B", Request{MAC: "01:00:5e:00:00:01"}, ErrInvalidAddress, `mac "01:00:5e:00:00:01"`},
		{"another address for an owner that holds one", "A", Request{IP: "10.100.0.11"}, ErrAddressInUse, "instance A already holds ip 10.100.0.10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := n.Allocate(context.Background(), tt.owner, tt.req)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v; want %v saying %q", err, tt.wantErr, tt.want)
			}
		})
	}
	if leases, _ := n.Leases(context.Background()); len(leases) != 1 {
		t.Fatalf("refused requests left leases: %+v", leases)
	}
}

func TestConcurrentAllocationsNeverShareAnAddress(t *testing.T) {
	n := newLeaseNetwork(t, "10.100.0.0/16")
	const workers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := n.Allocate(context.Background(), fmt.Sprintf("w%d-%d", w, i), Request{}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	leases, err := n.Leases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	assertDistinct(t, leases, workers*each)
}

func TestAllocationsFromTwoProcessesNeverShareAnAddress(t *testing.T) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for range 2 {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), leaseHelperEnv+"="+dir)
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	seen := map[string]bool{}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", i, err, outs[i])
		}
		lines := strings.Split(strings.TrimSpace(outs[i].String()), "\n")
		if len(lines) != leaseHelperCount {
			t.Fatalf("helper %d printed %d leases, want %d:\n%s", i, len(lines), leaseHelperCount, outs[i])
		}
		for _, l := range lines {
			for _, addr := range strings.Fields(l) {
				if seen[addr] {
					t.Fatalf("%s was handed out twice", addr)
				}
				seen[addr] = true
			}
		}
	}
	n, _ := New(host.Local{}, Config{Subnet: "10.9.0.0/24"}, dir)
	leases, err := n.Leases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	assertDistinct(t, leases, 2*leaseHelperCount)
}

func assertDistinct(t *testing.T, leases []Lease, want int) {
	t.Helper()
	if len(leases) != want {
		t.Fatalf("%d leases, want %d", len(leases), want)
	}
	ips, macs := map[netip.Addr]string{}, map[string]string{}
	for _, l := range leases {
		if o, dup := ips[l.IP]; dup {
			t.Fatalf("%s leased to both %s and %s", l.IP, o, l.Owner)
		}
		if o, dup := macs[l.MAC]; dup {
			t.Fatalf("%s leased to both %s and %s", l.MAC, o, l.Owner)
		}
		ips[l.IP], macs[l.MAC] = l.Owner, l.Owner
	}
}
