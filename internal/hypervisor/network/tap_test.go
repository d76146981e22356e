package network

import (
	"context"
	"encoding/json"
	"os/exec"
	"os/user"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network/netnstest"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// tapUser is the user a TAP device lets open it, as ip -details reports it ("" for none).
func tapUser(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("ip", "-json", "-details", "link", "show", "dev", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	var links []struct {
		LinkInfo struct {
			Data struct {
				User string `json:"user"`
			} `json:"info_data"`
		} `json:"linkinfo"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -json link show dev %s: %v: %s", name, err, out)
	}
	return links[0].LinkInfo.Data.User
}

// A TAP made for a VMM that runs as a user is that user's, so that the VMM opens it without
// privilege; one left behind with another owner is replaced by one with the right owner.
func TestTapIsOwnedByTheVMMUser(t *testing.T) {
	u, err := user.Lookup("hypeman-vmm")
	testutil.Require(t, err == nil, "no user hypeman-vmm (scripts/install-deps.sh creates it)")
	if !netnstest.Enter(t) {
		return
	}
	ctx := context.Background()
	n := newNetwork(t, Config{})
	if _, err := n.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.CreateTap(ctx, "hmuser", "01USER", ""); err != nil {
		t.Fatal(err)
	}
	if got := tapUser(t, "hmuser"); got != "" {
		t.Fatalf("a TAP made with no user is %q's", got)
	}
	if err := n.CreateTap(ctx, "hmuser", "01USER", u.Username); err != nil {
		t.Fatalf("make the TAP again for %s: %v", u.Username, err)
	}
	if got := tapUser(t, "hmuser"); got != u.Username && got != u.Uid {
		t.Fatalf("the TAP is %q's, want %s's (uid %s)", got, u.Username, u.Uid)
	}
	if err := n.CreateTap(ctx, "hmuser2", "01USER2", "hypeman-no-such-user"); err == nil {
		t.Fatal("a TAP was made for a user the host does not have")
	}
}
