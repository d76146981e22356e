package network

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network/netnstest"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// Every test here changes interfaces, routes or rules, so each runs in a network namespace of its
// own (netnstest.Enter) and never touches the host's.

// run runs a command in the test's namespace and fails the test when it fails.
func run(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func setForwarding(t *testing.T, on bool) {
	t.Helper()
	v := map[bool]string{true: "1", false: "0"}[on]
	// net.ipv4.ip_forward belongs to the network namespace: this changes the test's own only.
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(v), 0o644); err != nil {
		t.Fatal(err)
	}
}

// addLink adds an up veth interface with addr (CIDR) and, if via is set, a default route through
// it. Its peer is in the namespace too, so nothing sent through it leaves the namespace.
func addLink(t *testing.T, name, addr, via string) {
	t.Helper()
	run(t, "ip", "link", "add", name, "type", "veth", "peer", "name", name+"-p")
	run(t, "ip", "address", "add", addr, "dev", name)
	run(t, "ip", "link", "set", "dev", name+"-p", "up")
	run(t, "ip", "link", "set", "dev", name, "up")
	if via != "" {
		run(t, "ip", "route", "add", "default", "via", via, "dev", name)
	}
}

func newNetwork(t *testing.T, cfg Config) *Network {
	t.Helper()
	testutil.RequireTool(t, "nft")
	cfg.Enabled = true
	n, err := New(host.Local{}, cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustLink(t *testing.T, n *Network, name string) link {
	t.Helper()
	l, ok, err := n.linkByName(context.Background(), name)
	if err != nil || !ok {
		t.Fatalf("interface %s: found %v, %v", name, ok, err)
	}
	return l
}

// natRule is one rule of an nftables table as nft lists it.
type natRule struct {
	Chain   string `json:"chain"`
	Comment string `json:"comment"`
	Expr    []json.RawMessage
}

// natRules lists the rules of NATTable; nil when the table does not exist.
func natRules(t *testing.T) []natRule { return tableRules(t, natFamily, NATTable) }

// tableRules lists the rules of an nftables table; nil when the table does not exist.
func tableRules(t *testing.T, family, table string) []natRule {
	t.Helper()
	out, err := exec.Command("nft", "-j", "list", "table", family, table).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "No such file or directory") {
			return nil
		}
		t.Fatalf("nft list: %v\n%s", err, out)
	}
	var listing struct {
		Nftables []struct {
			Rule *natRule `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &listing); err != nil {
		t.Fatal(err)
	}
	rules := []natRule{}
	for _, o := range listing.Nftables {
		if o.Rule != nil {
			rules = append(rules, *o.Rule)
		}
	}
	return rules
}

func TestSetupIsIdempotentAndMakesNoNATWithoutAnUplink(t *testing.T) {
	if !netnstest.Enter(t) {
		return
	}
	setForwarding(t, false) // no uplink, so forwarding does not matter
	n := newNetwork(t, Config{DNS: []string{"10.100.0.53"}})
	ctx := context.Background()
	for i := range 2 {
		uplink, err := n.Setup(ctx)
		if err != nil {
			t.Fatalf("setup %d: %v", i+1, err)
		}
		if uplink != "" {
			t.Fatalf("setup %d chose the uplink %q in a namespace without a default route", i+1, uplink)
		}
	}
	br := mustLink(t, n, "vmbr0")
	if br.LinkInfo.Kind != "bridge" || br.Alias != n.alias("") || br.Address != "02:68:0a:64:00:01" || !strings.Contains(strings.Join(br.Flags, ","), "UP") {
		t.Fatalf("bridge: %+v", br)
	}
	addrs := run(t, "ip", "-4", "-o", "address", "show", "dev", "vmbr0")
	if strings.Count(addrs, "inet ") != 1 || !strings.Contains(addrs, "inet 10.100.0.1/16") {
		t.Fatalf("the bridge's addresses after two setups:\n%s", addrs)
	}
	if rules := natRules(t); rules != nil {
		t.Fatalf("NAT rules without an uplink: %+v", rules)
	}
	if err := n.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := n.linkByName(ctx, "vmbr0"); ok {
		t.Fatal("teardown left the bridge")
	}
}

func TestSetupMasqueradesOutOfTheUplinkWithOneMarkedRule(t *testing.T) {
	if !netnstest.Enter(t) {
		return
	}
	ctx := context.Background()
	addLink(t, "up0", "192.0.2.1/24", "192.0.2.254")
	addLink(t, "up1", "198.51.100.1/24", "")

	setForwarding(t, false)
	n := newNetwork(t, Config{Subnet: "10.200.0.0/24"})
	if _, err := n.Setup(ctx); !errors.Is(err, ErrForwardingOff) || !strings.Contains(err.Error(), "net.ipv4.ip_forward is 0") || !strings.Contains(err.Error(), "up0") {
		t.Fatalf("setup with forwarding off: %v", err)
	}
	if rules := natRules(t); rules != nil {
		t.Fatalf("a refused setup wrote rules: %+v", rules)
	}

	setForwarding(t, true)
	for range 2 {
		uplink, err := n.Setup(ctx)
		if err != nil || uplink != "up0" {
			t.Fatalf("setup: uplink %q, %v; want the default route's up0", uplink, err)
		}
	}
	assertOneRule(t, "vmbr0", "10.200.0.0", 24, "up0")

	explicit := newNetwork(t, Config{Subnet: "10.200.0.0/24", Uplink: "up1"})
	if uplink, err := explicit.Setup(ctx); err != nil || uplink != "up1" {
		t.Fatalf("setup with uplink up1: %q, %v", uplink, err)
	}
	assertOneRule(t, "vmbr0", "10.200.0.0", 24, "up1")

	missing := newNetwork(t, Config{Subnet: "10.200.0.0/24", Uplink: "eth9"})
	if _, err := missing.Setup(ctx); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), `network uplink "eth9" is not allowed: an interface the host has`) {
		t.Fatalf("setup with a missing uplink: %v", err)
	}

	none := newNetwork(t, Config{Subnet: "10.200.0.0/24", Uplink: UplinkNone})
	if uplink, err := none.Setup(ctx); err != nil || uplink != "" {
		t.Fatalf("setup with uplink none: %q, %v", uplink, err)
	}
	if rules := natRules(t); rules != nil {
		t.Fatalf("uplink none left NAT rules: %+v", rules)
	}

	if _, err := n.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	if rules := natRules(t); rules != nil {
		t.Fatalf("teardown left NAT rules: %+v", rules)
	}
}

// assertOneRule checks that the NAT table holds exactly one rule, in the bridge's chain, marked,
// masquerading the subnet addr/bits out of uplink.
func assertOneRule(t *testing.T, bridge, addr string, bits int, uplink string) {
	t.Helper()
	rules := natRules(t)
	if len(rules) != 1 {
		t.Fatalf("%d NAT rules, want 1: %+v", len(rules), rules)
	}
	r := rules[0]
	if r.Chain != NATChain(bridge) || r.Comment != NATComment(bridge) || len(r.Expr) != 3 {
		t.Fatalf("NAT rule in chain %q, comment %q, %d expressions", r.Chain, r.Comment, len(r.Expr))
	}
	var source struct {
		Match struct {
			Left struct {
				Payload struct{ Field string }
			}
			Right struct {
				Prefix struct {
					Addr string
					Len  int
				}
			}
		}
	}
	var out struct {
		Match struct {
			Left struct {
				Meta struct{ Key string }
			}
			Right string
		}
	}
	var action map[string]any
	for i, v := range []any{&source, &out, &action} {
		if err := json.Unmarshal(r.Expr[i], v); err != nil {
			t.Fatalf("NAT rule expression %d: %v: %s", i, err, r.Expr[i])
		}
	}
	if p := source.Match.Right.Prefix; source.Match.Left.Payload.Field != "saddr" || p.Addr != addr || p.Len != bits {
		t.Errorf("the rule matches %s %s/%d, want saddr %s/%d", source.Match.Left.Payload.Field, p.Addr, p.Len, addr, bits)
	}
	if out.Match.Left.Meta.Key != "oifname" || out.Match.Right != uplink {
		t.Errorf("the rule matches %s %q, want oifname %q", out.Match.Left.Meta.Key, out.Match.Right, uplink)
	}
	if _, ok := action["masquerade"]; !ok {
		t.Errorf("the rule's action is %v, want masquerade", action)
	}
}

func TestSetupRefusesASubnetThatOverlapsAHostRoute(t *testing.T) {
	if !netnstest.Enter(t) {
		return
	}
	addLink(t, "lan0", "10.100.5.1/24", "")
	n := newNetwork(t, Config{})
	_, err := n.Setup(context.Background())
	if !errors.Is(err, ErrSubnetOverlap) || !strings.Contains(err.Error(), "network subnet 10.100.0.0/16 overlaps the host route 10.100.5.0/24 dev lan0") {
		t.Fatalf("setup over a host route: %v", err)
	}
	if _, ok, _ := n.linkByName(context.Background(), "vmbr0"); ok {
		t.Fatal("a refused setup created the bridge")
	}
	if _, err := newNetwork(t, Config{Subnet: "10.101.0.0/16"}).Setup(context.Background()); err != nil {
		t.Fatalf("a subnet beside the route: %v", err)
	}
}

func TestSetupRefusesAnInterfaceThatIsNotABridge(t *testing.T) {
	if !netnstest.Enter(t) {
		return
	}
	addLink(t, "vmbr0", "192.0.2.1/32", "")
	_, err := newNetwork(t, Config{}).Setup(context.Background())
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), `network bridge "vmbr0" names an existing veth interface of the host, not a bridge`) {
		t.Fatalf("setup on a veth interface: %v", err)
	}
}

// noNetAdmin runs every command without CAP_NET_ADMIN, as an unprivileged provider would.
type noNetAdmin struct{ host.Local }

func (noNetAdmin) Run(ctx context.Context, stdin io.Reader, argv ...string) ([]byte, error) {
	return host.Local{}.Run(ctx, stdin, append([]string{"setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"}, argv...)...)
}

func TestSetupWithoutCapNetAdminSaysWhatIsMissing(t *testing.T) {
	if !netnstest.Enter(t) {
		return
	}
	testutil.RequireTool(t, "setpriv")
	n, err := New(noNetAdmin{}, Config{Enabled: true}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = n.Setup(context.Background())
	if !errors.Is(err, ErrNotPermitted) || !strings.Contains(err.Error(), "without CAP_NET_ADMIN") || !strings.Contains(err.Error(), "bridge vmbr0") {
		t.Fatalf("setup without CAP_NET_ADMIN: %v", err)
	}
}

func TestTapsAreAttachedMarkedReplacedAndRemoved(t *testing.T) {
	if !netnstest.Enter(t) {
		return
	}
	ctx := context.Background()
	n := newNetwork(t, Config{})
	other := newNetwork(t, Config{}) // another data directory on the same bridge
	if _, err := n.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.CreateTap(ctx, "hmaaaa", "01AAAA", ""); err != nil {
		t.Fatal(err)
	}
	// A TAP whose VMM died is still there; creating it again replaces it.
	if err := n.CreateTap(ctx, "hmaaaa", "01AAAA", ""); err != nil {
		t.Fatalf("creating an existing TAP again: %v", err)
	}
	if err := other.CreateTap(ctx, "hmbbbb", "01BBBB", ""); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "tuntap", "add", "dev", "hmforeign", "mode", "tap")
	tap := mustLink(t, n, "hmaaaa")
	if tap.Master != "vmbr0" || tap.LinkInfo.Data.Type != "tap" || !strings.Contains(strings.Join(tap.Flags, ","), "UP") {
		t.Fatalf("TAP: %+v", tap)
	}
	taps, err := n.Taps(ctx)
	if err != nil || len(taps) != 1 || taps[0] != (Tap{Name: "hmaaaa", Owner: "01AAAA", Master: "vmbr0"}) {
		t.Fatalf("Taps = %+v, %v; want only this data directory's hmaaaa", taps, err)
	}
	if err := n.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	mustLink(t, n, "vmbr0") // TAPs are still attached: the bridge stays

	for _, name := range []string{"hmaaaa", "hmaaaa", "hmbbbb"} {
		if err := DeleteTap(ctx, host.Local{}, name); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
	}
	if _, ok, _ := n.linkByName(ctx, "hmaaaa"); ok {
		t.Fatal("the TAP is still there after DeleteTap")
	}
	if err := n.CreateTap(ctx, "bad/name", "x", ""); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("a TAP name with a slash: %v", err)
	}
	if err := n.CreateTap(ctx, "hmnobridge", "x", ""); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "link", "delete", "dev", "hmnobridge")
	run(t, "ip", "link", "delete", "dev", "hmforeign")
	if err := n.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := n.linkByName(ctx, "vmbr0"); ok {
		t.Fatal("teardown left the bridge once nothing was attached")
	}
}
