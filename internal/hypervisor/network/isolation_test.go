package network

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network/netnstest"
)

// rulesOf lists the rules of chain in FilterTable of family, each as its comment and the
// expressions' JSON.
func rulesOf(t *testing.T, family, chain string) []string {
	t.Helper()
	var rules []string
	for _, r := range tableRules(t, family, FilterTable) {
		if r.Chain == chain {
			var expr []string
			for _, e := range r.Expr {
				expr = append(expr, string(e))
			}
			rules = append(rules, r.Comment+" "+strings.Join(expr, " "))
		}
	}
	return rules
}

// ruleWith reports whether one of rules has the comment and mentions every one of words.
func ruleWith(rules []string, comment string, words ...string) bool {
	return slices.ContainsFunc(rules, func(r string) bool {
		if !strings.HasPrefix(r, "hypeman:"+comment+" ") {
			return false
		}
		for _, w := range words {
			if !strings.Contains(r, w) {
				return false
			}
		}
		return true
	})
}

func TestGuestsAreIsolatedUnlessTheyShareAPeerGroup(t *testing.T) {
	if !netnstest.Enter(t) {
		return
	}
	ctx := context.Background()
	setForwarding(t, false)
	n := newNetwork(t, Config{DNS: []string{"10.100.0.1"}, HostPorts: []int{5000, 443, 5000}})
	other := newNetwork(t, Config{}) // another data directory on the same bridge
	if _, err := n.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	for tap, owner := range map[string]string{"hma": "01A", "hmb": "01B", "hmc": "01C"} {
		if err := n.CreateTap(ctx, tap, owner, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.CreateTap(ctx, "hmo", "01O", ""); err != nil {
		t.Fatal(err)
	}
	for tap, groups := range map[string][]string{"hma": {"web", "db"}, "hmb": {"db"}, "hmc": nil} {
		if err := n.Join(ctx, tap, groups); err != nil {
			t.Fatalf("join %s: %v", tap, err)
		}
	}
	if err := other.Join(ctx, "hmo", []string{"db"}); err != nil {
		t.Fatal(err)
	}

	guests := rulesOf(t, "bridge", n.GuestsChain())
	if !ruleWith(guests, "peers:db", `"hma"`, `"hmb"`) || ruleWith(guests, "peers:db", `"hmc"`) || ruleWith(guests, "peers:db", `"hmo"`) {
		t.Fatalf("the db group's rule should let hma and hmb reach each other, and no one else:\n%s", strings.Join(guests, "\n"))
	}
	if ruleWith(guests, "peers:web") {
		t.Fatalf("a group of one needs no rule:\n%s", strings.Join(guests, "\n"))
	}
	if !ruleWith(guests, "isolate", "iifname", `"hma"`, `"hmb"`, `"hmc"`, "drop") || !ruleWith(guests, "isolate", "oifname", `"hmc"`, "drop") ||
		ruleWith(guests, "isolate", `"hmo"`) {
		t.Fatalf("every guest of the data directory, and only those, should be isolated:\n%s", strings.Join(guests, "\n"))
	}
	if g := rulesOf(t, "bridge", other.GuestsChain()); !ruleWith(g, "isolate", `"hmo"`) || ruleWith(g, "isolate", `"hma"`) {
		t.Fatalf("the other data directory keeps its own chain:\n%s", strings.Join(g, "\n"))
	}
	hostRules := rulesOf(t, "inet", n.HostChain())
	for _, want := range []struct{ comment, word string }{{"replies", "established"}, {"ping", "echo-request"}, {"dns", "53"}, {"isolate", "drop"}} {
		if !ruleWith(hostRules, want.comment, "vmbr0", want.word) {
			t.Fatalf("no %s rule in the host chain:\n%s", want.comment, strings.Join(hostRules, "\n"))
		}
	}
	if !ruleWith(hostRules, "host-ports", "vmbr0", "10.100.0.1", "443", "5000") {
		t.Fatalf("no rule for the host ports:\n%s", strings.Join(hostRules, "\n"))
	}
	if h := rulesOf(t, "inet", other.HostChain()); ruleWith(h, "dns") || ruleWith(h, "host-ports") {
		t.Fatalf("guests given no name server on the gateway get no DNS rule:\n%s", strings.Join(h, "\n"))
	}
	if fwd := rulesOf(t, "inet", n.ForwardChain()); !ruleWith(fwd, "bridged", "vmbr0", "accept") || !ruleWith(fwd, "isolate", "drop") || ruleWith(fwd, "uplink") {
		t.Fatalf("without an uplink, guests are routed nowhere:\n%s", strings.Join(fwd, "\n"))
	}

	// Leaving, and a TAP that is gone, take the guest out of every rule.
	if err := n.Leave(ctx, "hmb"); err != nil {
		t.Fatal(err)
	}
	if err := DeleteTap(ctx, n.h, "hmc"); err != nil {
		t.Fatal(err)
	}
	if err := n.Join(ctx, "hma", []string{"db"}); err != nil {
		t.Fatal(err)
	}
	guests = rulesOf(t, "bridge", n.GuestsChain())
	if ruleWith(guests, "peers:db") || ruleWith(guests, "isolate", `"hmc"`) || !ruleWith(guests, "isolate", `"hmb"`) {
		t.Fatalf("after hmb left and hmc was deleted (hmb's TAP is still on the bridge, so it stays isolated):\n%s", strings.Join(guests, "\n"))
	}
	state, err := os.ReadFile(n.isolationPath())
	if err != nil || strings.Contains(string(state), "hmc") || strings.Contains(string(state), "hmb") {
		t.Fatalf("isolation.json after the changes: %s, %v", state, err)
	}
	if err := n.Join(ctx, "hma", []string{"Bad_Group"}); err == nil || !strings.Contains(err.Error(), `"Bad_Group"`) {
		t.Fatalf("a bad peer group: %v", err)
	}

	for _, tap := range []string{"hma", "hmb"} {
		if err := DeleteTap(ctx, n.h, tap); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	if r := rulesOf(t, "bridge", n.GuestsChain()); r != nil {
		t.Fatalf("teardown left rules: %v", r)
	}
	if r := rulesOf(t, "bridge", other.GuestsChain()); !ruleWith(r, "isolate", `"hmo"`) {
		t.Fatalf("teardown of one data directory removed the other's rules: %v", r)
	}
}
