package instances

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/logtail"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
)

// WaitSpec is what an instance must show after a boot (create, start, restart in place) or a
// restore to Running before the operation succeeds (docs/adr/0012-wait-for-ready.md). Every
// condition set must hold, in the order below; Delay comes after them. The zero value waits for
// nothing but the program's start.
type WaitSpec struct {
	// Console is a regular expression (Go's RE2 syntax) that a console line printed by this boot
	// must match; what earlier boots printed does not count.
	Console string `json:"console,omitempty"`
	// TCPPort is a port of the instance's address that must accept a TCP connection; 0 for none.
	TCPPort int `json:"tcp_port,omitempty"`
	// HTTP is a GET that must answer with a status; nil for none.
	HTTP *HTTPWait `json:"http,omitempty"`
	// Delay is a settle time after the other conditions, while the program must keep running.
	Delay time.Duration `json:"delay_ns,omitempty"`
	// DelayText is Delay as the user wrote it ("90s"), kept so that an import gives back the same
	// spelling; "" when it was not written as text.
	DelayText string `json:"delay,omitempty"`
}

// HTTPWait is an HTTP GET of http://<ip_address>:Port<Path> that must answer with Status.
type HTTPWait struct {
	Port   int    `json:"port"`
	Path   string `json:"path,omitempty"`   // "" is "/"
	Status int    `json:"status,omitempty"` // 0 is DefaultWaitStatus
}

// Bounds of a WaitSpec.
const (
	DefaultWaitStatus = http.StatusOK
	MaxWaitDelay      = 10 * time.Minute
	// waitTail is how many console lines a failed wait shows.
	waitTail = 20
	// waitEvery is the pace of the wait; each try of a port is bounded by waitTry.
	waitEvery = 250 * time.Millisecond
	waitTry   = 2 * time.Second
)

// ErrNotReady: the instance booted, but what its WaitSpec asks for did not happen within the
// operation's time, or the program exited meanwhile. The instance is left Stopped.
var ErrNotReady = errors.New("the instance did not become ready")

// The rules of each field, for error messages and documentation.
const (
	WaitConsoleRule = "a regular expression in Go's RE2 syntax (https://github.com/google/re2/wiki/Syntax), matched against each console line"
	WaitPortRule    = "a TCP port from 1 to 65535"
	WaitStatusRule  = "an HTTP status code from 100 to 599"
	WaitPathRule    = "an absolute URL path starting with \"/\", such as \"/healthz\", without spaces"
)

// WaitDelayRule is what Delay accepts.
var WaitDelayRule = fmt.Sprintf("a duration from 0s to %s, such as \"5s\"", strings.TrimSuffix(MaxWaitDelay.String(), "0s"))

// ValidateWaitConsole checks a console pattern.
func ValidateWaitConsole(re string) error {
	if re == "" {
		return &FieldError{Field: "wait_for.console", Value: re, Allowed: WaitConsoleRule + "; leave it out to wait for no line"}
	}
	if _, err := regexp.Compile(re); err != nil {
		return &FieldError{Field: "wait_for.console", Value: re, Allowed: WaitConsoleRule + " (" + err.Error() + ")"}
	}
	return nil
}

// ValidateWaitPort checks a port; field names it ("wait_for.tcp_port", "wait_for.http.port").
func ValidateWaitPort(field string, port int64) error {
	if port < 1 || port > 65535 {
		return &FieldError{Field: field, Value: strconv.FormatInt(port, 10), Allowed: WaitPortRule}
	}
	return nil
}

// ValidateWaitStatus checks the status an HTTP wait expects.
func ValidateWaitStatus(status int64) error {
	if status < 100 || status > 599 {
		return &FieldError{Field: "wait_for.http.status", Value: strconv.FormatInt(status, 10), Allowed: WaitStatusRule}
	}
	return nil
}

// ValidateWaitPath checks the path an HTTP wait asks for.
func ValidateWaitPath(p string) error {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " \t\r\n\x00") {
		return &FieldError{Field: "wait_for.http.path", Value: p, Allowed: WaitPathRule}
	}
	return nil
}

// ValidateWaitDelay checks a settle time.
func ValidateWaitDelay(d time.Duration) error {
	if d < 0 || d > MaxWaitDelay {
		return &FieldError{Field: "wait_for.delay", Value: d.String(), Allowed: WaitDelayRule}
	}
	return nil
}

// validate checks every field of w (nil is valid) and reports all that are wrong at once.
func (w *WaitSpec) validate() []error {
	if w == nil {
		return nil
	}
	var errs []error
	if w.Console != "" {
		errs = append(errs, ValidateWaitConsole(w.Console))
	}
	if w.TCPPort != 0 {
		errs = append(errs, ValidateWaitPort("wait_for.tcp_port", int64(w.TCPPort)))
	}
	if h := w.HTTP; h != nil {
		errs = append(errs, ValidateWaitPort("wait_for.http.port", int64(h.Port)))
		if h.Path != "" {
			errs = append(errs, ValidateWaitPath(h.Path))
		}
		if h.Status != 0 {
			errs = append(errs, ValidateWaitStatus(int64(h.Status)))
		}
	}
	errs = append(errs, ValidateWaitDelay(w.Delay))
	return errs
}

// NeedsNetwork names the first condition of w that dials the instance's address; "" when none does.
func (w *WaitSpec) NeedsNetwork() string {
	switch {
	case w == nil:
		return ""
	case w.TCPPort != 0:
		return "wait_for.tcp_port"
	case w.HTTP != nil:
		return "wait_for.http"
	}
	return ""
}

// Empty reports whether w waits for nothing but the program's start.
func (w *WaitSpec) Empty() bool { return w == nil || *w == WaitSpec{} }

// checkWaitFor checks spec's WaitSpec, and that an instance whose wait dials its address gets one.
func (m *Manager) checkWaitFor(spec Spec) error {
	errs := spec.WaitFor.validate()
	if field := spec.WaitFor.NeedsNetwork(); field != "" && (m.net == nil || (spec.Network != nil && spec.Network.Disabled)) {
		why := "the provider has no host network"
		if m.net != nil {
			why = "the instance has network = { enabled = false }"
		}
		errs = append(errs, &FieldError{Field: field, Value: "set", Allowed: "only on an instance with a network interface (" + why +
			"); wait for a console line instead (wait_for.console)"})
	}
	return errors.Join(errs...)
}

// condition is one thing a wait waits for: done once it held, and what the last try saw.
type condition struct {
	name string // as in the configuration: `console =~ "ready"`
	try  func(ctx context.Context) (bool, error)
	done bool
	last error // why the last try did not hold, for the error
}

// waiter is one wait of an instance after one boot, whose console starts at from.
type waiter struct {
	m       *Manager
	md      *metadata
	from    int64
	scanned int64 // console bytes after from already read in whole lines
	conds   []*condition
	exited  bool // the console shows the program's exit marker
	console *regexp.Regexp
	matched bool
}

func (m *Manager) newWaiter(md *metadata, from int64) (*waiter, error) {
	w := &waiter{m: m, md: md, from: from}
	spec := md.WaitFor
	if spec.Console != "" {
		re, err := regexp.Compile(spec.Console)
		if err != nil {
			return nil, ValidateWaitConsole(spec.Console)
		}
		w.console = re
		w.conds = append(w.conds, &condition{name: fmt.Sprintf("console line matching %q", spec.Console),
			try: func(context.Context) (bool, error) { return w.matched, nil }})
	}
	if (spec.TCPPort != 0 || spec.HTTP != nil) && md.IPAddress == "" {
		return nil, configError(fmt.Sprintf("%s: %s has no network interface, so there is no address to dial", spec.NeedsNetwork(), md.Name))
	}
	if spec.TCPPort != 0 {
		addr := net.JoinHostPort(md.IPAddress, strconv.Itoa(spec.TCPPort))
		w.conds = append(w.conds, &condition{name: "TCP connect to " + addr, try: func(ctx context.Context) (bool, error) {
			c, err := m.host.DialTCP(ctx, addr)
			if err != nil {
				return false, err
			}
			_ = c.Close()
			return true, nil
		}})
	}
	if h := spec.HTTP; h != nil {
		p, status := h.Path, h.Status
		if p == "" {
			p = "/"
		}
		if status == 0 {
			status = DefaultWaitStatus
		}
		url := "http://" + net.JoinHostPort(md.IPAddress, strconv.Itoa(h.Port)) + p
		client := &http.Client{
			Transport: &http.Transport{
				DialContext:       func(ctx context.Context, _, addr string) (net.Conn, error) { return m.host.DialTCP(ctx, addr) },
				DisableKeepAlives: true,
				Proxy:             nil, // the guest is reached from the host, never through a proxy
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		w.conds = append(w.conds, &condition{name: fmt.Sprintf("HTTP GET %s answering %d", url, status), try: func(ctx context.Context) (bool, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return false, err
			}
			resp, err := client.Do(req)
			if err != nil {
				return false, err
			}
			_ = resp.Body.Close()
			if resp.StatusCode != status {
				return false, fmt.Errorf("answered %s", resp.Status)
			}
			return true, nil
		}})
	}
	return w, nil
}

// awaitReady waits for md's WaitSpec after a boot or restore whose console starts at from, within
// ctx (BootTimeout when it has no deadline). A wait that fails, because the time ran out or the
// program exited, leaves the instance Stopped and says what it waited for, how long, and the
// console's last lines; the error is an ErrNotReady.
func (m *Manager) awaitReady(ctx context.Context, md *metadata, from int64, after string) error {
	if md.WaitFor.Empty() {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, BootTimeout)
		defer cancel()
	}
	w, err := m.newWaiter(md, from)
	if err != nil {
		return err
	}
	t0 := time.Now()
	err = poll.Until(ctx, waitEvery, w.try)
	if err == nil && md.WaitFor.Delay > 0 && !w.exited {
		err = poll.Within(ctx, md.WaitFor.Delay, waitEvery, func(ctx context.Context) (bool, error) {
			return w.ended(ctx), nil
		})
		if errors.Is(err, poll.ErrTimeout) {
			err = nil // the program kept running through the delay
		} else if err == nil {
			err = errEnded
		}
	}
	waited := time.Since(t0).Round(100 * time.Millisecond)
	if err == nil && !w.exited {
		m.log(ctx, "instance ready", map[string]any{"id": md.ID, "after": after, "ms": time.Since(t0).Milliseconds()})
		return nil
	}
	return w.fail(ctx, after, waited, err)
}

// errEnded is how a try tells the wait that the program ended.
var errEnded = errors.New("the program ended")

// try reads the console lines printed since the last try, then tries each condition that has
// not held yet, in order; done when all have held.
func (w *waiter) try(ctx context.Context) (bool, error) {
	if w.ended(ctx) {
		return false, errEnded
	}
	for _, c := range w.conds {
		if c.done {
			continue
		}
		tctx, cancel := context.WithTimeout(ctx, waitTry)
		done, err := c.try(tctx)
		cancel()
		c.done, c.last = done, err
		if !done {
			return false, nil
		}
	}
	return true, nil
}

// ended reads the new whole console lines (matching them against the console condition) and
// reports whether the program exited or the VMM went.
func (w *waiter) ended(ctx context.Context) bool {
	b := w.m.consoleSince(ctx, w.md.ID, w.from+w.scanned)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		for _, line := range strings.Split(string(b[:i]), "\n") {
			line = strings.TrimSuffix(line, "\r")
			if strings.HasPrefix(line, system.MarkerExited) {
				w.exited = true
			}
			if w.console != nil && !w.matched && w.console.MatchString(line) {
				w.matched = true
			}
		}
		w.scanned += int64(i + 1)
	}
	if w.exited {
		return true
	}
	alive, err := w.m.host.ProcessAlive(ctx, w.md.PID, w.m.layout.dir(w.md.ID))
	return err == nil && !alive
}

// fail stops the instance that did not become ready, or puts a restored one back in Standby, and
// explains why.
func (w *waiter) fail(ctx context.Context, after string, waited time.Duration, cause error) error {
	m, md := w.m, w.md
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.StopTimeout+15*time.Second)
	defer cancel()
	var pending []string
	for _, c := range w.conds {
		if !c.done {
			s := c.name
			if c.last != nil {
				s += " (last try: " + c.last.Error() + ")"
			}
			pending = append(pending, s)
		}
	}
	if len(pending) == 0 && md.WaitFor.Delay > 0 {
		pending = append(pending, fmt.Sprintf("the program to keep running through delay = %q", md.WaitFor.Delay))
	}
	what := strings.Join(pending, ", ")
	e := &WaitError{Instance: md.Name, After: after, Waiting: what, Waited: waited, Left: Stopped}
	if errors.Is(cause, errEnded) || w.exited {
		m.waitGone(uctx, md, 3*time.Second) // the guest powers off after the exit: its last lines
		if alive, err := m.host.ProcessAlive(uctx, md.PID, m.layout.dir(md.ID)); err == nil && alive {
			_ = m.stop(uctx, md)
		} else {
			_ = m.clearPID(uctx, md)
		}
		end := m.readBootEnd(uctx, md.ID)
		md.Ended, e.ExitCode, e.Ended = &end, end.ExitCode, end.Reason
	} else {
		if !poll.Stopped(cause) {
			e.Cause = cause
		}
		if after != "restore" || !w.backToStandby(ctx) {
			_ = m.stop(uctx, md) // a graceful power-off, so the overlay is flushed
			md.Ended = &bootEnd{Reason: fmt.Sprintf("stopped at %s: not ready within %s of the %s: waiting for %s",
				time.Now().UTC().Format(time.RFC3339), waited, after, what)}
		} else {
			e.Left = Standby
		}
	}
	if e.Left == Stopped {
		_ = m.saveMetadata(uctx, md)
	}
	e.Console = w.tail(uctx)
	m.log(ctx, "instance not ready", map[string]any{"id": md.ID, "after": after, "waiting_for": what, "ms": waited.Milliseconds(), "left": string(e.Left)})
	return e
}

// backToStandby takes a restored guest that did not become ready back to Standby: its memory is
// what the user had, and a power-off would lose it. The next plan shows Standby → Running again,
// so the next apply restores and waits once more. It reports false when the new snapshot cannot
// be taken; the guest is then stopped, as after a boot.
func (w *waiter) backToStandby(ctx context.Context) bool {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), standbyAfterWait)
	defer cancel()
	if err := w.m.reach(sctx, w.md.ID, Standby); err != nil {
		w.m.log(ctx, "a restore that was not ready could not go back to Standby", map[string]any{"id": w.md.ID, "error": err.Error()})
		return false
	}
	return true
}

// tail is the console's last lines since this boot started.
func (w *waiter) tail(ctx context.Context) []string {
	lines, _ := logtail.Lines(strings.ReplaceAll(string(w.m.consoleSince(ctx, w.md.ID, w.from)), "\r\n", "\n"), waitTail)
	return lines
}

// standbyAfterWait bounds the snapshot that takes a restored guest that was not ready back to Standby.
const standbyAfterWait = 5 * time.Minute

// WaitError is a wait that failed: which instance, after what, what it was still waiting for,
// how long it waited, and the console's last lines. It is an ErrNotReady, and an
// ErrProgramExited too when the program ended during the wait.
type WaitError struct {
	Instance string
	After    string // "boot" or "restore"
	Waiting  string // the conditions that had not held
	Waited   time.Duration
	// ExitCode is the program's, when it exited during the wait; Ended says how the boot ended
	// then, and is empty when the wait ran out of time.
	ExitCode *int
	Ended    string
	Cause    error // what stopped the wait, other than its time running out
	Console  []string
	// Left is the state the wait left the instance in: Stopped, or Standby for a restore whose
	// guest could go back to sleep with its memory.
	Left State
}

func (e *WaitError) Error() string {
	var b strings.Builder
	switch {
	case e.ExitCode != nil:
		fmt.Fprintf(&b, "wait_for: the program of %s exited with code %d %s into the wait after its %s, while waiting for %s",
			e.Instance, *e.ExitCode, e.Waited, e.After, e.Waiting)
	case e.Ended != "":
		fmt.Fprintf(&b, "wait_for: %s ended %s into the wait after its %s (%s), while waiting for %s", e.Instance, e.Waited, e.After, e.Ended, e.Waiting)
	default:
		fmt.Fprintf(&b, "wait_for: %s was not ready after waiting %s since its %s: still waiting for %s", e.Instance, e.Waited, e.After, e.Waiting)
		if e.Cause != nil {
			fmt.Fprintf(&b, " (%v)", e.Cause)
		}
		if e.Left == Standby {
			fmt.Fprintf(&b, "; it was put back in Standby with its memory, so that the next apply restores it and waits again")
		} else {
			fmt.Fprintf(&b, "; it was stopped")
		}
	}
	if len(e.Console) > 0 {
		fmt.Fprintf(&b, "\nlast %d console lines of this %s:\n  %s", len(e.Console), e.After, strings.Join(e.Console, "\n  "))
	}
	return b.String()
}

func (e *WaitError) Unwrap() []error {
	if e.ExitCode != nil || e.Ended != "" {
		return []error{ErrNotReady, ErrProgramExited}
	}
	return []error{ErrNotReady}
}

// awaitRestored waits for md's WaitSpec after a restore to Running. The console of the boot the
// snapshot was taken from counts: a restored guest is the same boot, and what it printed before
// the snapshot is what it is ready after.
func (m *Manager) awaitRestored(ctx context.Context, md *metadata) error {
	return m.awaitReady(ctx, md, md.BootConsole, "restore")
}

// keepNotReady ends a create whose instance booted but did not become ready: the instance is kept,
// Stopped, with its console, and the error says so; undo is dropped.
func (m *Manager) keepNotReady(ctx context.Context, md *metadata, undo *cleanups, cause error) (*Instance, error) {
	uctx := context.WithoutCancel(ctx)
	md.Creating = nil
	if err := m.saveMetadata(uctx, md); err != nil {
		return nil, fmt.Errorf("create %s: %w", md.Name, errors.Join(cause, err)) // undo then removes it all
	}
	*undo = nil
	inst, err := m.Get(uctx, md.ID)
	if err != nil {
		return nil, errors.Join(cause, err)
	}
	return inst, fmt.Errorf("create %s: %w", md.Name, cause)
}
