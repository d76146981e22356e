package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"sort"
)

// Guest isolation (docs/adr/0009-guest-isolation.md). A guest on the bridge reaches the gateway's
// name server (when the gateway is one of the DNS servers), ping and the TCP ports of HostPorts
// there, the outside through the uplink, and nothing else: not another guest, not the host's other services or networks. Guests
// that share a peer group reach each other. The rules live in tables named FilterTable of the
// bridge family (guest to guest, which the bridge forwards without IP routing) and of the inet
// family (guest to host and to the host's other networks), one chain per bridge each, and are
// rewritten whole, in one nft transaction, from isolation.json whenever a guest's TAP joins or
// leaves, so they never hold half a change and never outlive what they describe.
const (
	FilterTable = "hypeman"
	// PeerGroupRule describes valid peer group names, for error messages and documentation.
	PeerGroupRule = "1 to 63 characters: lower-case letters, digits and '-', starting and ending with a letter or digit"
)

var peerGroupRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// The chains of one data directory's guests on a bridge. Each data directory has its own (named
// by a hash of its path), so two installations sharing a bridge never rewrite each other's rules,
// and each one's guests are isolated from the other's too.

// GuestsChain is the bridge-family chain that filters what the bridge forwards between guests.
func (n *Network) GuestsChain() string { return "guests-" + n.s.bridge + "-" + n.dirTag() }

// HostChain is the inet-family chain that filters what guests send to the host itself.
func (n *Network) HostChain() string { return "host-" + n.s.bridge + "-" + n.dirTag() }

// ForwardChain is the inet-family chain that filters what guests send through the host.
func (n *Network) ForwardChain() string { return "forward-" + n.s.bridge + "-" + n.dirTag() }

func (n *Network) dirTag() string {
	sum := sha256.Sum256([]byte(n.dir))
	return hex.EncodeToString(sum[:4])
}

// isolationFile is isolation.json in the network's directory: which TAPs are on the bridge with
// which peer groups, and the uplink Setup found.
type isolationFile struct {
	Uplink string              `json:"uplink"`
	Peers  map[string][]string `json:"peers"` // TAP name → peer groups
}

func (n *Network) isolationPath() string { return path.Join(n.dir, "isolation.json") }

// Join records that tap is on the bridge with peer groups, and rewrites the rules so that it
// reaches the guests that share one of them, and no other. Joining again replaces the groups, so
// a guest's groups change without a restart.
func (n *Network) Join(ctx context.Context, tap string, groups []string) error {
	if err := checkIfName(tap); err != "" {
		return fmt.Errorf("%w: TAP name %q: %s", ErrInvalidConfig, tap, err)
	}
	for _, g := range groups {
		if err := CheckPeerGroup(g); err != nil {
			return err
		}
	}
	return n.withIsolation(ctx, func(f *isolationFile) {
		f.Peers[tap] = slices.Compact(slices.Sorted(slices.Values(groups)))
	})
}

// Leave forgets tap and rewrites the rules without it. Leaving twice is harmless.
func (n *Network) Leave(ctx context.Context, tap string) error {
	if tap == "" {
		return nil
	}
	return n.withIsolation(ctx, func(f *isolationFile) { delete(f.Peers, tap) })
}

// CheckPeerGroup checks a peer group name.
func CheckPeerGroup(g string) error {
	if len(g) == 0 || len(g) > 63 || !peerGroupRE.MatchString(g) {
		return &SettingError{Setting: "peer group", Value: g, Allowed: PeerGroupRule}
	}
	return nil
}

// recordUplink keeps the uplink Setup chose for the rules that later joins write, and writes them.
func (n *Network) recordUplink(ctx context.Context, uplink string) error {
	return n.withIsolation(ctx, func(f *isolationFile) { f.Uplink = uplink })
}

// withIsolation changes isolation.json under its lock and writes the rules it describes. TAPs
// that no longer exist on the host are dropped from it first.
func (n *Network) withIsolation(ctx context.Context, change func(*isolationFile)) error {
	if _, err := n.h.LookPath(ctx, "nft"); err != nil {
		return fmt.Errorf("%w: the nft command (nftables) is not installed on the host, and isolating the guests on %s from each other and from the host needs it; install nftables",
			ErrMissingTool, n.s.bridge)
	}
	if err := n.h.MkdirAll(ctx, n.dir, 0o750); err != nil {
		return fmt.Errorf("network state directory: %w", err)
	}
	unlock, err := n.h.Lock(ctx, path.Join(n.dir, "isolation.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	f := isolationFile{Peers: map[string][]string{}}
	b, err := n.h.ReadFile(ctx, n.isolationPath())
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("read %s: %w", n.isolationPath(), err)
		}
		if f.Peers == nil {
			f.Peers = map[string][]string{}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("read the guest isolation state: %w", err)
	}
	change(&f)
	taps, err := n.Taps(ctx)
	if err != nil {
		return err
	}
	onBridge := map[string]bool{}
	for _, t := range taps {
		if t.Master == n.s.bridge {
			onBridge[t.Name] = true
		}
	}
	for tap := range f.Peers {
		if !onBridge[tap] {
			delete(f.Peers, tap)
		}
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := n.h.WriteFile(ctx, n.isolationPath(), out, 0o640); err != nil {
		return fmt.Errorf("write the guest isolation state: %w", err)
	}
	if err := n.nft(ctx, n.isolationRules(f, onBridge)...); err != nil {
		return fmt.Errorf("write the guest isolation rules of %s: %w", n.s.bridge, err)
	}
	return nil
}

// isolationRules is the transaction that makes the bridge's chains hold exactly what f says.
// guests are every TAP of this data directory on the bridge, in isolation.json or not, so a TAP
// whose join was lost is isolated all the same.
func (n *Network) isolationRules(f isolationFile, guests map[string]bool) []nftCmd {
	br := n.s.bridge
	var cmds []nftCmd
	chainCmds := func(family, name, hook string) map[string]any {
		chain := map[string]any{"family": family, "table": FilterTable, "name": name}
		def := map[string]any{"family": family, "table": FilterTable, "name": name,
			"type": "filter", "hook": hook, "prio": 0, "policy": "accept"}
		cmds = append(cmds,
			nftCmd{"add": {"table": map[string]any{"family": family, "name": FilterTable}}},
			nftCmd{"add": {"chain": def}},
			nftCmd{"flush": {"chain": chain}})
		return chain
	}
	rule := func(chain map[string]any, comment string, expr ...any) {
		r := map[string]any{"family": chain["family"], "table": FilterTable, "chain": chain["name"],
			"comment": "hypeman:" + comment, "expr": expr}
		cmds = append(cmds, nftCmd{"add": {"rule": r}})
	}
	iif := func(v any) any { return match(map[string]any{"meta": map[string]any{"key": "iifname"}}, v) }
	oif := func(v any) any { return match(map[string]any{"meta": map[string]any{"key": "oifname"}}, v) }
	set := func(names []string) any { return map[string]any{"set": names} }
	accept := map[string]any{"accept": nil}
	drop := map[string]any{"drop": nil}

	// Guest to guest: frames the bridge forwards from one port to another.
	guestsChain := chainCmds("bridge", n.GuestsChain(), "forward")
	byGroup := map[string][]string{}
	for tap, groups := range f.Peers {
		for _, g := range groups {
			byGroup[g] = append(byGroup[g], tap)
		}
	}
	groups := make([]string, 0, len(byGroup))
	for g := range byGroup {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		if taps := byGroup[g]; len(taps) > 1 {
			sort.Strings(taps)
			rule(guestsChain, "peers:"+g, iif(set(taps)), oif(set(taps)), accept)
		}
	}
	all := make([]string, 0, len(guests))
	for tap := range guests {
		all = append(all, tap)
	}
	sort.Strings(all)
	if len(all) > 0 {
		rule(guestsChain, "isolate", iif(set(all)), drop)
		rule(guestsChain, "isolate", oif(set(all)), drop)
	}

	// "in" tests flags: either one set, as `ct state established,related` does.
	established := map[string]any{"match": map[string]any{"op": "in",
		"left": map[string]any{"ct": map[string]any{"key": "state"}}, "right": []any{"established", "related"}}}
	// Guest to the host itself: replies to what the host opened, ping, the gateway's name server
	// when guests are given it, and the host ports the operator opened.
	hostChain := chainCmds("inet", n.HostChain(), "input")
	rule(hostChain, "replies", iif(br), established, accept)
	rule(hostChain, "ping", iif(br),
		match(map[string]any{"payload": map[string]any{"protocol": "icmp", "field": "type"}}, "echo-request"), accept)
	if slices.Contains(n.s.dns, n.s.gateway) {
		for _, proto := range []string{"udp", "tcp"} {
			rule(hostChain, "dns",
				iif(br),
				match(map[string]any{"payload": map[string]any{"protocol": "ip", "field": "daddr"}}, n.s.gateway.String()),
				match(map[string]any{"payload": map[string]any{"protocol": proto, "field": "dport"}}, 53),
				accept)
		}
	}
	if len(n.s.ports) > 0 {
		ports := make([]any, len(n.s.ports))
		for i, p := range n.s.ports {
			ports[i] = p
		}
		rule(hostChain, "host-ports",
			iif(br),
			match(map[string]any{"payload": map[string]any{"protocol": "ip", "field": "daddr"}}, n.s.gateway.String()),
			match(map[string]any{"payload": map[string]any{"protocol": "tcp", "field": "dport"}}, map[string]any{"set": ports}),
			accept)
	}
	rule(hostChain, "isolate", iif(br), drop)

	// Guest through the host: out of the uplink only. Frames bridged between guests pass here
	// too on a host with br_netfilter, as bridge to bridge; the bridge chain has decided on those.
	fwdChain := chainCmds("inet", n.ForwardChain(), "forward")
	rule(fwdChain, "bridged", iif(br), oif(br), accept)
	if f.Uplink != "" {
		rule(fwdChain, "uplink", iif(br), oif(f.Uplink), accept)
	}
	rule(fwdChain, "isolate", iif(br), drop)
	return cmds
}

// removeIsolation deletes the bridge's isolation chains, and each table once it holds no chain.
func (n *Network) removeIsolation(ctx context.Context) error {
	if _, err := n.h.LookPath(ctx, "nft"); err != nil {
		return nil
	}
	var cmds []nftCmd
	for family, names := range map[string][]string{
		"bridge": {n.GuestsChain()},
		"inet":   {n.HostChain(), n.ForwardChain()},
	} {
		chains, err := n.tableChains(ctx, family, FilterTable)
		if err != nil {
			return err
		}
		if chains == nil {
			continue
		}
		for _, name := range names {
			if chains[name] {
				c := map[string]any{"family": family, "table": FilterTable, "name": name}
				cmds = append(cmds, nftCmd{"flush": {"chain": c}}, nftCmd{"delete": {"chain": c}})
				delete(chains, name)
			}
		}
		if len(chains) == 0 {
			cmds = append(cmds, nftCmd{"delete": {"table": map[string]any{"family": family, "name": FilterTable}}})
		}
	}
	if err := n.nft(ctx, cmds...); err != nil {
		return fmt.Errorf("remove the guest isolation rules of %s: %w", n.s.bridge, err)
	}
	if err := n.h.Remove(ctx, n.isolationPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
