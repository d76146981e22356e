package instances

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
)

func TestWaitSpecRulesNameTheFieldTheValueAndWhatIsAllowed(t *testing.T) {
	tests := []struct {
		name  string
		w     *WaitSpec
		field string
		value string
		rule  string
	}{
		{"a regular expression that does not compile", &WaitSpec{Console: "ready("}, "wait_for.console", "ready(", "missing closing )"},
		{"port 0", &WaitSpec{HTTP: &HTTPWait{Port: 0}}, "wait_for.http.port", "0", WaitPortRule},
		{"a port above 65535", &WaitSpec{TCPPort: 70000}, "wait_for.tcp_port", "70000", WaitPortRule},
		{"status 700", &WaitSpec{HTTP: &HTTPWait{Port: 80, Status: 700}}, "wait_for.http.status", "700", WaitStatusRule},
		{"status 99", &WaitSpec{HTTP: &HTTPWait{Port: 80, Status: 99}}, "wait_for.http.status", "99", WaitStatusRule},
		{"a relative path", &WaitSpec{HTTP: &HTTPWait{Port: 80, Path: "healthz"}}, "wait_for.http.path", "healthz", WaitPathRule},
		{"a path with a space", &WaitSpec{HTTP: &HTTPWait{Port: 80, Path: "/a b"}}, "wait_for.http.path", "/a b", WaitPathRule},
		{"a negative delay", &WaitSpec{Delay: -time.Second}, "wait_for.delay", "-1s", WaitDelayRule},
		{"a delay above the bound", &WaitSpec{Delay: MaxWaitDelay + time.Second}, "wait_for.delay", "10m1s", WaitDelayRule},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := errors.Join(tc.w.validate()...)
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want a FieldError", err)
			}
			if fe.Field != tc.field || fe.Value != tc.value || !strings.Contains(fe.Allowed, tc.rule) {
				t.Fatalf("got %s %q allowed %q; want %s %q allowed %q", fe.Field, fe.Value, fe.Allowed, tc.field, tc.value, tc.rule)
			}
		})
	}
	for _, ok := range []*WaitSpec{
		nil, {}, {Console: "^listening on :8080$"}, {TCPPort: 1}, {TCPPort: 65535},
		{HTTP: &HTTPWait{Port: 80}}, {HTTP: &HTTPWait{Port: 80, Path: "/healthz?x=1", Status: 599}}, {Delay: MaxWaitDelay},
	} {
		if err := errors.Join(ok.validate()...); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

func TestAWaitThatDialsTheInstanceNeedsANetworkInterface(t *testing.T) {
	noNet := &Manager{}
	withNet := &Manager{net: &network.Network{}}
	tcp := Spec{WaitFor: &WaitSpec{TCPPort: 80}}
	web := Spec{WaitFor: &WaitSpec{HTTP: &HTTPWait{Port: 80}}, Network: &NetworkSpec{Disabled: true}}
	for _, tc := range []struct {
		m     *Manager
		spec  Spec
		field string
		why   string
	}{
		{noNet, tcp, "wait_for.tcp_port", "the provider has no host network"},
		{withNet, web, "wait_for.http", "network = { enabled = false }"},
	} {
		err := tc.m.checkWaitFor(tc.spec)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Allowed, tc.why) || !strings.Contains(fe.Allowed, "wait_for.console") {
			t.Fatalf("got %v; want a FieldError on %s saying %q and the way out", err, tc.field, tc.why)
		}
	}
	if err := withNet.checkWaitFor(tcp); err != nil {
		t.Fatalf("an instance on the host network: %v", err)
	}
	if err := noNet.checkWaitFor(Spec{WaitFor: &WaitSpec{Console: "up"}}); err != nil {
		t.Fatalf("a console wait without a network: %v", err)
	}
}

func TestAFailedWaitSaysWhatItWaitedForHowLongAndTheConsole(t *testing.T) {
	timedOut := &WaitError{Instance: "web", After: "boot", Waiting: `console line matching "ready"`, Waited: 30 * time.Second,
		Console: []string{"booting", "still booting"}}
	code := 3
	exited := &WaitError{Instance: "web", After: "restore", Waiting: "TCP connect to 10.100.0.2:80", Waited: 1200 * time.Millisecond,
		ExitCode: &code, Ended: "program exited with code 3 at …"}
	if !errors.Is(timedOut, ErrNotReady) || errors.Is(timedOut, ErrProgramExited) {
		t.Fatal("a wait that ran out of time is an ErrNotReady only")
	}
	if !errors.Is(exited, ErrNotReady) || !errors.Is(exited, ErrProgramExited) {
		t.Fatal("a program that exited during the wait is an ErrNotReady and an ErrProgramExited")
	}
	for _, want := range []string{"web", "30s", `console line matching "ready"`, "it was stopped", "last 2 console lines", "  still booting"} {
		if !strings.Contains(timedOut.Error(), want) {
			t.Errorf("%q does not say %q", timedOut.Error(), want)
		}
	}
	for _, want := range []string{"exited with code 3", "1.2s", "after its restore", "TCP connect to 10.100.0.2:80"} {
		if !strings.Contains(exited.Error(), want) {
			t.Errorf("%q does not say %q", exited.Error(), want)
		}
	}
}

// The console condition reads whole lines after the boot's offset: an earlier boot's line, a line
// still being written and a carriage return count for nothing.
func TestTheConsoleWaitReadsOnlyWholeLinesOfThisBoot(t *testing.T) {
	dir := t.TempDir()
	m := &Manager{host: host.Local{}, layout: layout{dir}}
	const id = "01JD8X4ZQ6T7N5B2V3C9M0K1HA"
	if err := os.MkdirAll(m.layout.logs(id), 0o750); err != nil {
		t.Fatal(err)
	}
	earlier := "ready\r\n" + system.MarkerExited + "0\r\n"
	write := func(s string) {
		f, err := os.OpenFile(m.layout.console(id), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = f.WriteString(s)
		_ = f.Close()
	}
	write(earlier)
	md := &metadata{ID: id, WaitFor: &WaitSpec{Console: "^ready$"}}
	w, err := m.newWaiter(md, int64(len(earlier)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, step := range []struct {
		write           string
		matched, exited bool
	}{
		{"booting\r\n", false, false},
		{"rea", false, false},        // not a whole line yet
		{"dy now\r\n", false, false}, // "ready now" does not match ^ready$
		{"ready\r\n", true, false},
		{system.MarkerExited + "3\r\n", true, true},
	} {
		write(step.write)
		w.ended(ctx)
		if w.matched != step.matched || w.exited != step.exited {
			t.Fatalf("after %q: matched %v exited %v, want %v %v", step.write, w.matched, w.exited, step.matched, step.exited)
		}
	}
}
