package network

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// NAT lives in an nftables table of its own, NATTable, with one chain per bridge holding one
// masquerade rule marked with a comment. The rules are written as nft's JSON, which carries
// interface names as plain strings whatever characters they hold, and each change is one nft
// transaction, so a rule is never half written.
const (
	NATTable  = "hypeman"
	natFamily = "ip"
)

// NATChain is the chain of NATTable that holds the bridge's rule.
func NATChain(bridge string) string { return "nat-" + bridge }

// NATComment marks the bridge's masquerade rule so that it can be found and removed.
func NATComment(bridge string) string { return "hypeman:" + bridge }

// nftCmd is one command of an nft JSON transaction: {"add": {"chain": {...}}}.
type nftCmd map[string]map[string]any

// ensureNAT writes the masquerade rule for the subnet out of uplink, replacing whatever the
// bridge's chain held. It refuses when the host does not forward IPv4, which NAT needs.
func (n *Network) ensureNAT(ctx context.Context, uplink string) error {
	if _, err := n.h.LookPath(ctx, "nft"); err != nil {
		return fmt.Errorf("%w: the nft command (nftables) is not installed on the host, and masquerading the guests out of %s needs it; install nftables, or set the network uplink to %q",
			ErrMissingTool, uplink, UplinkNone)
	}
	on, err := n.forwarding(ctx)
	if err != nil {
		return err
	}
	if !on {
		return fmt.Errorf("%w: net.ipv4.ip_forward is 0, so guests on %s could not reach beyond the host through %s; enable it (sysctl -w net.ipv4.ip_forward=1, and in /etc/sysctl.d to keep it), or set the network uplink to %q",
			ErrForwardingOff, n.s.bridge, uplink, UplinkNone)
	}
	chain := n.chain()
	chain["type"], chain["hook"], chain["prio"], chain["policy"] = "nat", "postrouting", 100, "accept"
	rule := map[string]any{
		"family": natFamily, "table": NATTable, "chain": NATChain(n.s.bridge), "comment": NATComment(n.s.bridge),
		"expr": []any{
			match(map[string]any{"payload": map[string]any{"protocol": "ip", "field": "saddr"}},
				map[string]any{"prefix": map[string]any{"addr": n.s.subnet.Addr().String(), "len": n.s.subnet.Bits()}}),
			match(map[string]any{"meta": map[string]any{"key": "oifname"}}, uplink),
			map[string]any{"masquerade": nil},
		},
	}
	err = n.nft(ctx,
		nftCmd{"add": {"table": map[string]any{"family": natFamily, "name": NATTable}}},
		nftCmd{"add": {"chain": chain}},
		nftCmd{"flush": {"chain": n.chain()}},
		nftCmd{"add": {"rule": rule}},
	)
	if err != nil {
		return fmt.Errorf("write the NAT rule for %s out of %s: %w", n.s.subnet, uplink, err)
	}
	return nil
}

// removeNAT deletes the bridge's chain, and the table once it holds no chain. A host without nft
// or without the table has nothing to remove.
func (n *Network) removeNAT(ctx context.Context) error {
	if _, err := n.h.LookPath(ctx, "nft"); err != nil {
		return nil
	}
	chains, err := n.tableChains(ctx, natFamily, NATTable)
	if err != nil || chains == nil {
		return err
	}
	var cmds []nftCmd
	if chains[NATChain(n.s.bridge)] {
		cmds = append(cmds, nftCmd{"flush": {"chain": n.chain()}}, nftCmd{"delete": {"chain": n.chain()}})
		delete(chains, NATChain(n.s.bridge))
	}
	if len(chains) == 0 {
		cmds = append(cmds, nftCmd{"delete": {"table": map[string]any{"family": natFamily, "name": NATTable}}})
	}
	if err := n.nft(ctx, cmds...); err != nil {
		return fmt.Errorf("remove the NAT rule of %s: %w", n.s.bridge, err)
	}
	return nil
}

// tableChains lists the chains of an nftables table; nil when the table does not exist.
func (n *Network) tableChains(ctx context.Context, family, table string) (map[string]bool, error) {
	out, err := n.h.Run(ctx, nil, "nft", "-j", "list", "table", family, table)
	if err != nil {
		if strings.Contains(err.Error(), "No such file or directory") {
			return nil, nil
		}
		return nil, fmt.Errorf("list nftables table %s %s: %w", family, table, err)
	}
	var listing struct {
		Nftables []struct {
			Chain *struct {
				Name string `json:"name"`
			} `json:"chain"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &listing); err != nil {
		return nil, fmt.Errorf("nft list: unexpected output: %w", err)
	}
	chains := map[string]bool{}
	for _, o := range listing.Nftables {
		if o.Chain != nil {
			chains[o.Chain.Name] = true
		}
	}
	return chains, nil
}

// chain names the bridge's chain in an nft JSON command.
func (n *Network) chain() map[string]any {
	return map[string]any{"family": natFamily, "table": NATTable, "name": NATChain(n.s.bridge)}
}

func match(left, right any) map[string]any {
	return map[string]any{"match": map[string]any{"op": "==", "left": left, "right": right}}
}

// nft runs cmds as one transaction.
func (n *Network) nft(ctx context.Context, cmds ...nftCmd) error {
	if len(cmds) == 0 {
		return nil
	}
	doc, err := json.Marshal(map[string]any{"nftables": cmds})
	if err != nil {
		return err
	}
	_, err = n.h.Run(ctx, bytes.NewReader(doc), "nft", "-j", "-f", "-")
	return err
}
