// Package netnstest runs a test inside a network namespace of its own, so that the bridges, TAP
// devices, routes and NAT rules it makes, and every packet it sends, stay inside that namespace
// and never touch the host's real interfaces.
package netnstest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// envMarker tells a re-executed test binary which test it runs inside the namespace, and the
// namespace it was started from.
const envMarker = "HYPEMAN_NETNS_TEST"

// unshareVariants are tried in order: a new network namespace as root, else as the root of a
// new user namespace (for a user without CAP_SYS_ADMIN whose kernel allows it).
var unshareVariants = [][]string{
	{"--net"},
	{"--user", "--map-root-user", "--net"},
}

// Enter runs the calling test in a fresh network namespace. Called outside one, it re-executes
// the test binary under `unshare --net` for this test alone, relays the output, passes on the
// result and returns false: the caller must return at once. In the re-executed binary it checks
// that the namespace is new and holds nothing but loopback, brings loopback up and returns true.
// Under -short the test is skipped.
//
//	func TestBridge(t *testing.T) {
//		if !netnstest.Enter(t) {
//			return
//		}
//		...
//	}
func Enter(t *testing.T) bool {
	t.Helper()
	if v, ok := os.LookupEnv(envMarker); ok {
		name, outer, _ := strings.Cut(v, " ")
		if name != t.Name() {
			t.Skipf("only %s runs in this namespace", name)
		}
		inside(t, outer)
		return true
	}
	testutil.SkipShort(t, "a network namespace (the test binary re-executed under unshare)")
	testutil.RequireTool(t, "ip")
	unshare := testutil.RequireTool(t, "unshare")
	outer, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatalf("read this process's network namespace: %v", err)
	}
	var variant []string
	var refusals []string
	for _, v := range unshareVariants {
		out, err := exec.Command(unshare, append(v, "--", "true")...).CombinedOutput()
		if err == nil {
			variant = v
			break
		}
		refusals = append(refusals, fmt.Sprintf("unshare %s: %v: %s", strings.Join(v, " "), err, strings.TrimSpace(string(out))))
	}
	testutil.Require(t, variant != nil, "no network namespace can be created here (run as root): "+strings.Join(refusals, "; "))
	outside(t, unshare, variant, outer)
	return false
}

// inside guards the re-executed test: it must run in a namespace other than the one it was
// started from, holding only loopback, which it brings up.
func inside(t *testing.T, outer string) {
	t.Helper()
	here, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatalf("read this process's network namespace: %v", err)
	}
	if here == outer {
		t.Fatalf("refusing to run: still in the network namespace %s the test started from", here)
	}
	out, err := exec.Command("ip", "-json", "link", "show").Output()
	if err != nil {
		t.Fatalf("list the namespace's interfaces: %v", err)
	}
	var links []struct {
		Name string `json:"ifname"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		t.Fatalf("ip link show: %v", err)
	}
	if len(links) != 1 || links[0].Name != "lo" {
		t.Fatalf("refusing to run: the namespace is not fresh, it has the interfaces %v", links)
	}
	if out, err := exec.Command("ip", "link", "set", "dev", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("bring loopback up: %v: %s", err, out)
	}
}

// outside re-executes this test binary for t alone inside a new namespace and reports its result.
func outside(t *testing.T, unshare string, variant []string, outer string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, variant...), "--", exe, "-test.run", runPattern(t.Name()), "-test.v", "-test.count=1")
	if d, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout", time.Until(d).Round(time.Second).String())
	}
	cmd := exec.Command(unshare, args...)
	cmd.Env = append(os.Environ(), envMarker+"="+t.Name()+" "+outer)
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", unshare, err)
	}
	var passed, skipped, ran bool
	var skipReason []string
	sc := bufio.NewScanner(pipe)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		t.Log("[netns] " + line)
		switch trimmed := strings.TrimSpace(line); {
		case strings.HasPrefix(trimmed, "=== RUN   "+t.Name()):
			ran = true
		case strings.HasPrefix(trimmed, "--- PASS: "+t.Name()+" "):
			passed = true
		case strings.HasPrefix(trimmed, "--- SKIP: "+t.Name()+" "):
			skipped = true
		case skipped && len(skipReason) < 3:
			skipReason = append(skipReason, trimmed)
		}
	}
	_, _ = io.Copy(io.Discard, pipe)
	err = cmd.Wait()
	switch {
	case err != nil:
		t.Fatalf("the test failed inside its network namespace: %v (output above)", err)
	case !ran:
		t.Fatalf("the re-executed test binary did not run %s (output above)", t.Name())
	case skipped:
		t.Skipf("skipped inside the network namespace: %s", strings.Join(skipReason, " "))
	case !passed:
		t.Fatalf("%s did not report a pass inside its network namespace (output above)", t.Name())
	}
}

// runPattern selects exactly the test called name, level by level for subtests.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}
