// Package chstandin is a stand-in for the Cloud Hypervisor VMM, for tests of code that drives one.
//
// It serves the REST API on a unix socket the way the real server does (one request at a time,
// the NONE/CREATED/RUNNING/PAUSED model, the status codes and error bodies of v52, v53 or the
// development head), writes and reads snapshot files, simulates a guest that prints the boot
// contract's marker on its serial console, checks every request against the official OpenAPI
// document, and injects faults on demand. cmd/cloud-hypervisor wraps it in a binary with the real
// command line.
package chstandin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ViolationLogPrefix starts every log line that reports a request departing from the spec, so
// that a test can find them in the binary's output.
const ViolationLogPrefix = "chstandin: spec violation: "

// LogViolations picks the spec violations out of the binary's output (its log, or the VMM output
// file a driver appends it to).
func LogViolations(output []byte) []string {
	var out []string
	for _, line := range strings.Split(string(output), "\n") {
		if v, ok := strings.CutPrefix(line, ViolationLogPrefix); ok {
			out = append(out, v)
		}
	}
	return out
}

// maxConnections is micro_http's limit; the next connection gets a raw 503.
const maxConnections = 10

// Options configure a Server.
type Options struct {
	Mode   Mode
	Faults Faults
	// Lenient records requests that depart from the spec and then answers them as the real server
	// would. By default such a request is refused with a 400 so that the client under test fails.
	Lenient bool
	// Pid is what vmm.ping reports; 0 means this process.
	Pid int
	// Log receives warnings, spec violations and, with Verbose > 0, one line per request.
	Log     io.Writer
	Verbose int
	// Stdout receives guest console output in Tty mode; nil discards it.
	Stdout io.Writer
	// PowerOffDelay is how long the simulated guest takes to power off after the ACPI power
	// button; 0 means 100ms.
	PowerOffDelay time.Duration
	// Spec is the OpenAPI document requests are checked against; nil means LoadSpec().
	Spec *Spec
}

// Server is one stand-in VMM process: its API and the VM it holds.
type Server struct {
	opts Options
	spec *Spec

	// mu is held for the whole of every request: the real server handles one at a time, from any
	// connection, and even vmm.ping waits behind a slow call.
	mu sync.Mutex
	m  *machine // nil in NONE
	// vmGenerations numbers the Vm objects this VMM has built.
	vmGenerations int
	// landlock holds the Landlock rulesets the VMM thread is restricted by, for good (landlock.go).
	landlock []*llLayer

	violationsMu sync.Mutex
	violations   []string
	logMu        sync.Mutex

	httpSrv    *http.Server
	listenerMu sync.Mutex
	listener   net.Listener
	conns      atomic.Int32

	exiting  atomic.Bool
	killed   chan struct{}
	killOnce sync.Once
	exitOnce sync.Once
	exited   chan struct{}
	exitCode int
	crashed  bool
}

// New makes a Server that holds no VM (NONE), as a freshly started VMM does.
func New(opts Options) (*Server, error) {
	if _, err := ParseMode(string(opts.Mode)); err != nil {
		return nil, err
	}
	if opts.Mode == "" {
		opts.Mode = V53
	}
	if opts.Pid == 0 {
		opts.Pid = os.Getpid()
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	if opts.PowerOffDelay == 0 {
		opts.PowerOffDelay = 100 * time.Millisecond
	}
	spec := opts.Spec
	if spec == nil {
		var err error
		if spec, err = LoadSpec(); err != nil {
			return nil, err
		}
	}
	s := &Server{opts: opts, spec: spec, killed: make(chan struct{}), exited: make(chan struct{})}
	s.httpSrv = &http.Server{Handler: s, ReadHeaderTimeout: time.Minute}
	return s, nil
}

// Serve answers API requests on l until the VMM exits (vmm.shutdown, guest power-off, Terminate,
// Kill). It returns nil on such an exit.
func (s *Server) Serve(l net.Listener) error {
	s.listenerMu.Lock()
	s.listener = l
	s.listenerMu.Unlock()
	err := s.httpSrv.Serve(&limitListener{Listener: l, s: s})
	if errors.Is(err, http.ErrServerClosed) {
		<-s.exited
		return nil
	}
	return err
}

// Exited is closed once the VMM has exited and its socket is closed.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// ExitCode is the process exit status after Exited: 0 for a clean exit.
func (s *Server) ExitCode() int { return s.exitCode }

// Crashed reports whether the VMM died (Kill or the die-after-boot fault) rather than exiting.
func (s *Server) Crashed() bool { return s.crashed }

// Violations lists the requests that departed from the API spec, in order.
func (s *Server) Violations() []string {
	s.violationsMu.Lock()
	defer s.violationsMu.Unlock()
	return append([]string(nil), s.violations...)
}

// Terminate is SIGTERM: the VM is deleted and the VMM exits cleanly, removing its socket.
func (s *Server) Terminate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteVM()
	s.releaseLandlock()
	s.beginExit(0, false)
}

// Kill is SIGKILL: the VMM stops at once, even in the middle of a request, and its socket file is
// left behind.
func (s *Server) Kill() {
	s.killOnce.Do(func() { close(s.killed) })
	s.beginExit(137, true)
	// Resources held by the VM go with the process; take them once the request in flight stops.
	go func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.deleteVM()
		s.releaseLandlock()
	}()
}

// beginExit stops serving. A clean exit lets the response in flight reach the client first.
func (s *Server) beginExit(code int, crash bool) {
	s.exitOnce.Do(func() {
		s.exiting.Store(true)
		s.exitCode, s.crashed = code, crash
		go func() {
			defer close(s.exited)
			if crash {
				s.listenerMu.Lock()
				if ul, ok := s.listener.(interface{ SetUnlinkOnClose(bool) }); ok {
					ul.SetUnlinkOnClose(false)
				}
				s.listenerMu.Unlock()
				_ = s.httpSrv.Close()
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.httpSrv.Shutdown(ctx); err != nil {
				_ = s.httpSrv.Close()
			}
		}()
	})
}

func (s *Server) logf(format string, args ...any) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	_, _ = fmt.Fprintf(s.opts.Log, format+"\n", args...)
}

func (s *Server) recordViolation(err error) {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	s.violationsMu.Lock()
	s.violations = append(s.violations, msg)
	s.violationsMu.Unlock()
	s.logf("%s%s", ViolationLogPrefix, msg)
}

// response is what one API call answers.
type response struct {
	status int
	body   []byte
	// server overrides the Server header (micro_http's own errors say "Firecracker API").
	server string
	close  bool
	after  func() // runs once the response has been written
}

func noContent() response { return response{status: http.StatusNoContent} }

func jsonResponse(status int, v any) response {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err) // only values built by the stand-in itself are marshalled
	}
	return response{status: status, body: body}
}

// apiError is an error chain, outermost first, as CH sends it from v47 on.
func (s *Server) apiError(status int, chain ...string) response {
	if s.opts.Faults.TextErrors {
		return response{status: status, body: []byte(strings.Join(chain, ": "))}
	}
	return jsonResponse(status, chain)
}

// fromAPI is the usual chain: "Error from API", the action's message, then the causes.
func (s *Server) fromAPI(status int, action string, causes ...string) response {
	return s.apiError(status, append([]string{"Error from API", action}, causes...)...)
}

// microHTTPError is a request micro_http itself refuses, before CH sees it.
func microHTTPError(msg string) response {
	body := fmt.Sprintf(`{ "error": %q }`, msg+"\nAll previous unanswered requests will be dropped.")
	return response{status: http.StatusBadRequest, body: []byte(body), server: "Firecracker API", close: true}
}

// ServeHTTP handles one API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exiting.Load() {
		// The process is gone: the client sees its connection drop.
		panic(http.ErrAbortHandler)
	}
	resp := s.handle(r)
	if s.opts.Verbose > 0 {
		s.logf("chstandin: %s %s -> %d %s", r.Method, r.URL.Path, resp.status, resp.body)
	}
	h := w.Header()
	h.Set("Server", "Cloud Hypervisor API")
	if resp.server != "" {
		h.Set("Server", resp.server)
	}
	h.Set("Connection", "keep-alive")
	if resp.close {
		h.Set("Connection", "close")
	}
	// micro_http sends neither Content-Type nor Content-Length with a 204.
	if resp.status != http.StatusNoContent {
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(resp.body)))
	}
	w.WriteHeader(resp.status)
	if len(resp.body) > 0 {
		_, _ = w.Write(resp.body)
	}
	if resp.after != nil {
		_ = http.NewResponseController(w).Flush()
		resp.after()
	}
}

func (s *Server) handle(r *http.Request) response {
	switch r.Method {
	case http.MethodGet, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		s.recordViolation(fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, ErrNotInSpec))
		return microHTTPError("Invalid HTTP method.")
	}
	limit := s.opts.Mode.bodyLimit()
	if r.ContentLength > limit {
		s.recordViolation(fmt.Errorf("%s %s: a %d-byte body is over the server's %d-byte limit", r.Method, r.URL.Path, r.ContentLength, limit))
		return microHTTPError(fmt.Sprintf("Request payload with size %d is larger than the limit of %d allowed by server.", r.ContentLength, limit))
	}
	var body []byte
	if r.ContentLength > 0 {
		var err error
		if body, err = io.ReadAll(io.LimitReader(r.Body, r.ContentLength)); err != nil {
			panic(http.ErrAbortHandler)
		}
	} else if r.ContentLength < 0 {
		// micro_http reads Content-Length bytes only: a chunked body is never seen.
		s.recordViolation(fmt.Errorf("%s %s: the request has no Content-Length, so the server ignores its body", r.Method, r.URL.Path))
	}

	action, ok := strings.CutPrefix(r.URL.Path, APIPrefix)
	rt, known := routes[action]
	if !ok || !known {
		if !ok || action != "vm.coredump" {
			s.recordViolation(fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, ErrNotInSpec))
		}
		// vm.coredump only exists in guest_debug builds.
		return s.apiError(http.StatusNotFound, "Not Found")
	}
	specErr := s.spec.CheckRequest(r, body)
	if specErr != nil {
		s.recordViolation(specErr)
	}
	switch {
	case r.Method == http.MethodPatch || r.Method == http.MethodDelete:
		if rt.badRequestBody {
			return s.apiError(http.StatusBadRequest, "Bad Request")
		}
		return response{status: http.StatusBadRequest}
	case r.Method != rt.method:
		return s.apiError(http.StatusBadRequest, "Bad Request")
	case rt.parse == nil && len(body) > 0:
		return s.apiError(http.StatusBadRequest, "Bad Request")
	case rt.parse != nil && len(body) == 0:
		if action == "vm.create" {
			return response{status: http.StatusBadRequest}
		}
		return s.apiError(http.StatusBadRequest, "Bad Request")
	}
	var req any
	if rt.parse != nil {
		var err error
		if req, err = rt.parse(body); err != nil {
			return s.apiError(http.StatusBadRequest, "Failed to deserialize JSON", err.Error())
		}
	}
	if specErr != nil && !s.opts.Lenient {
		return s.apiError(http.StatusBadRequest, "Request departs from the Cloud Hypervisor API spec", specErr.Error())
	}
	return rt.act(s, req)
}

// route is one entry of CH's exact-match route table.
type route struct {
	method string
	// parse decodes the body the way serde would; nil for actions that take no body.
	parse func([]byte) (any, error)
	act   func(*Server, any) response
	// badRequestBody: PATCH/DELETE get ["Bad Request"] rather than an empty 400.
	badRequestBody bool
}

var routes map[string]route

func init() {
	put := func(act func(*Server) response) route {
		return route{method: http.MethodPut, act: func(s *Server, _ any) response { return act(s) }}
	}
	putBody := func(parse func([]byte) (any, error), act func(*Server, any) response) route {
		return route{method: http.MethodPut, parse: parse, act: act}
	}
	get := func(act func(*Server) response) route {
		return route{method: http.MethodGet, act: func(s *Server, _ any) response { return act(s) }, badRequestBody: true}
	}
	routes = map[string]route{
		"vmm.ping":    get((*Server).ping),
		"vm.info":     get((*Server).info),
		"vm.counters": get((*Server).counters),

		"vm.boot":         put((*Server).boot),
		"vm.delete":       put((*Server).delete),
		"vm.shutdown":     put((*Server).shutdown),
		"vm.reboot":       put((*Server).reboot),
		"vm.pause":        put((*Server).pause),
		"vm.resume":       put((*Server).resume),
		"vm.power-button": put((*Server).powerButton),
		"vm.nmi":          put((*Server).nmi),
		"vmm.shutdown":    put((*Server).vmmShutdown),

		"vm.create":      putBody(parseVMConfig, (*Server).create),
		"vm.snapshot":    putBody(parseSnapshotConfig, (*Server).snapshot),
		"vm.restore":     putBody(parseRestoreConfig, (*Server).restore),
		"vm.resize":      putBody(parseResize, (*Server).resize),
		"vm.resize-zone": putBody(parseResizeZone, (*Server).resizeZone),
		"vm.resize-disk": putBody(parseResizeDisk, (*Server).resizeDisk),

		"vm.remove-device":     putBody(parseRemoveDevice, (*Server).removeDevice),
		"vm.send-migration":    putBody(parseMigration("destination_url"), migrationUnsupported("Error starting migration sender")),
		"vm.receive-migration": putBody(parseMigration("receiver_url"), migrationUnsupported("Error starting migration receiver")),
	}
	// micro_http answers PATCH/DELETE on these with ["Bad Request"], elsewhere with an empty 400.
	for _, action := range []string{"vm.create", "vmm.shutdown"} {
		r := routes[action]
		r.badRequestBody = true
		routes[action] = r
	}
	for _, k := range deviceKinds {
		routes["vm.add-"+k.route] = putBody(k.parse, k.add)
	}
}

// limitListener refuses connections past micro_http's limit with its raw 503.
type limitListener struct {
	net.Listener
	s *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.s.conns.Load() >= maxConnections {
			body := `{ "error": "Too many open connections" }`
			_, _ = fmt.Fprintf(c, "HTTP/1.1 503 \r\nServer: Firecracker API\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			_ = c.Close()
			continue
		}
		l.s.conns.Add(1)
		return &countedConn{Conn: c, s: l.s}, nil
	}
}

type countedConn struct {
	net.Conn
	s    *Server
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.s.conns.Add(-1) })
	return c.Conn.Close()
}

// decodeJSON decodes like serde: unknown fields are ignored, types must match.
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing characters")
	}
	return nil
}
