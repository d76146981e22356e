package chstandin

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

func TestPingReportsTheModesVersion(t *testing.T) {
	want := map[Mode][2]string{V52: {"52.0.0", "v52.0"}, V53: {"53.0.0", "v53.0"}, Head: {"54.0.0", "v53.0-246-gae44c2971"}}
	for _, mode := range Modes {
		t.Run(string(mode), func(t *testing.T) {
			ts := startServer(t, Options{Mode: mode, Pid: 4242})
			r := ts.do(http.MethodGet, "vmm.ping", "")
			var ping struct {
				BuildVersion string   `json:"build_version"`
				Version      string   `json:"version"`
				Pid          int      `json:"pid"`
				Features     []string `json:"features"`
			}
			if err := json.Unmarshal(r.body, &ping); err != nil {
				t.Fatal(err)
			}
			if ping.Version != want[mode][0] || ping.BuildVersion != want[mode][1] || ping.Pid != 4242 || !slices.Contains(ping.Features, "kvm") {
				t.Errorf("ping %+v, want version %s, build %s, pid 4242 and kvm", ping, want[mode][0], want[mode][1])
			}
			if line := mode.VersionLine(); line != "cloud-hypervisor "+want[mode][1] {
				t.Errorf("--version prints %q", line)
			}
		})
	}
}

func TestResponseHeadersAreMicroHTTPs(t *testing.T) {
	ts := startServer(t, Options{})
	g := makeGuestFiles(t, ts.dir)
	created := ts.put("vm.create", g.vmConfig())
	if created.status != http.StatusNoContent {
		t.Fatalf("vm.create: %d %s", created.status, created.body)
	}
	for _, h := range []string{"Content-Type", "Content-Length"} {
		if v := created.header.Get(h); v != "" {
			t.Errorf("204 carries %s: %q", h, v)
		}
	}
	info := ts.do(http.MethodGet, "vm.info", "")
	if info.header.Get("Content-Type") != "application/json" || info.header.Get("Server") != "Cloud Hypervisor API" {
		t.Errorf("200 headers: %v", info.header)
	}
	failed := ts.put("vm.pause", "")
	if failed.status != http.StatusInternalServerError || failed.header.Get("Content-Type") != "application/json" {
		t.Errorf("error reply: %d %v", failed.status, failed.header)
	}
}

func TestTextErrorsAreOneLine(t *testing.T) {
	ts := startServer(t, Options{Faults: Faults{TextErrors: true}})
	r := ts.put("vm.pause", "")
	if want := "Error from API: The VM could not be paused: VM is not running"; string(r.body) != want {
		t.Errorf("body %q, want %q", r.body, want)
	}
}

func TestBodyRules(t *testing.T) {
	tests := []struct {
		name, action, body string
		status             int
		chain              []string // nil: the body must be empty
	}{
		{"body on a body-less action", "vm.boot", `{}`, 400, []string{"Bad Request"}},
		{"no body where one is needed", "vm.snapshot", "", 400, []string{"Bad Request"}},
		{"vm.create without a body", "vm.create", "", 400, nil},
		{"malformed JSON", "vm.create", `{"payload":`, 400, []string{"Failed to deserialize JSON", "unexpected EOF"}},
		{"missing memory.size", "vm.create", `{"payload":{"kernel":"/k"},"memory":{}}`, 400, []string{"Failed to deserialize JSON", "missing field `size`"}},
		{"missing boot_vcpus", "vm.create", `{"payload":{"kernel":"/k"},"cpus":{"max_vcpus":1}}`, 400, []string{"Failed to deserialize JSON", "missing field `boot_vcpus`"}},
		{"missing destination_url", "vm.snapshot", `{}`, 400, []string{"Failed to deserialize JSON", "missing field `destination_url`"}},
		{"missing source_url", "vm.restore", `{"prefault":false}`, 400, []string{"Failed to deserialize JSON", "missing field `source_url`"}},
		{"unknown enum variant", "vm.create", `{"payload":{"kernel":"/k"},"serial":{"mode":"Socks"}}`, 400, []string{"Failed to deserialize JSON", "unknown variant `Socks`, expected one of `Off`, `Pty`, `Tty`, `File`, `Socket`, `Null`"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, Options{})
			r := ts.put(tt.action, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.chain == nil && len(r.body) > 0 {
				t.Errorf("body %q, want none", r.body)
			}
			if tt.chain != nil && !slices.Equal(r.chain(), tt.chain) {
				t.Errorf("chain %q, want %q", r.chain(), tt.chain)
			}
		})
	}
}

func TestNegativeSizeIsASerdeError(t *testing.T) {
	ts := startServer(t, Options{})
	r := ts.put("vm.create", `{"payload":{"kernel":"/k"},"memory":{"size":-1}}`)
	if r.status != 400 || r.chain()[0] != "Failed to deserialize JSON" {
		t.Errorf("%d %s", r.status, r.body)
	}
}

func TestRoutesAndMethods(t *testing.T) {
	tests := []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/api/v1/vm.nope", 404, `["Not Found"]`},
		{"GET", "/api/v1/vm.info/", 404, `["Not Found"]`},
		// Specs before v53 listed /vmm.nmi; the route is /vm.nmi.
		{"PUT", "/api/v1/vmm.nmi", 404, `["Not Found"]`},
		{"GET", "/api/v1/vm.pause", 400, `["Bad Request"]`},
		{"PUT", "/api/v1/vm.info", 400, `["Bad Request"]`},
		{"PATCH", "/api/v1/vm.pause", 400, ``},
		{"DELETE", "/api/v1/vm.boot", 400, ``},
		{"PATCH", "/api/v1/vm.info", 400, `["Bad Request"]`},
		{"DELETE", "/api/v1/vm.create", 400, `["Bad Request"]`},
		{"POST", "/api/v1/vm.boot", 400, `{ "error": "Invalid HTTP method.\nAll previous unanswered requests will be dropped." }`},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			ts := startServer(t, Options{})
			req, _ := http.NewRequest(tt.method, "http://localhost"+tt.path, nil)
			resp, err := ts.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			var body strings.Builder
			_, _ = bufio.NewReader(resp.Body).WriteTo(&body)
			if resp.StatusCode != tt.status || body.String() != tt.body {
				t.Errorf("%d %q, want %d %q", resp.StatusCode, body.String(), tt.status, tt.body)
			}
			if len(ts.srv.Violations()) == 0 {
				t.Error("a request outside the spec was not reported")
			}
		})
	}
}

func TestRequestsOutsideTheSpecAreRefusedAndReported(t *testing.T) {
	dir := testutil.ShortTempDir(t)
	g := makeGuestFiles(t, dir)
	// Each body is something the real server's serde accepts but the spec does not.
	bodies := map[string]string{
		"FlatVmdk is not in the spec's ImageType": fmt.Sprintf(`{"payload":{"kernel":%q},"disks":[{"path":%q,"image_type":"FlatVmdk"}]}`, g.kernel, g.disk),
		"the spec requires a payload":             `{"cpus":{"boot_vcpus":1,"max_vcpus":1}}`,
		"boot_vcpus has a minimum of 1":           fmt.Sprintf(`{"payload":{"kernel":%q},"cpus":{"boot_vcpus":0,"max_vcpus":1}}`, g.kernel),
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			strict := startServer(t, Options{})
			r := strict.put("vm.create", body)
			if r.status != http.StatusBadRequest || r.chain()[0] != "Request departs from the Cloud Hypervisor API spec" {
				t.Errorf("strict: %d %s", r.status, r.body)
			}
			if len(strict.srv.Violations()) != 1 {
				t.Errorf("strict: violations %q, want one", strict.srv.Violations())
			}
			if !strings.Contains(strict.log.String(), ViolationLogPrefix) {
				t.Errorf("the violation is not in the log: %q", strict.log.String())
			}
			lenient := startServer(t, Options{Lenient: true})
			if r := lenient.put("vm.create", body); r.status != http.StatusNoContent {
				t.Errorf("lenient: %d %s, want the real server's 204", r.status, r.body)
			}
			if len(lenient.srv.Violations()) != 1 {
				t.Errorf("lenient: violations %q, want one", lenient.srv.Violations())
			}
		})
	}
}

func TestRequestWithoutContentTypeIsReported(t *testing.T) {
	ts := startServer(t, Options{Lenient: true})
	req, _ := http.NewRequest(http.MethodPut, "http://localhost/api/v1/vm.resize", strings.NewReader(`{"desired_ram":1}`))
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if v := ts.srv.Violations(); len(v) != 1 || !strings.Contains(v[0], "Content-Type") {
		t.Errorf("violations %q, want one about the Content-Type", v)
	}
}

func TestOneRequestAtATime(t *testing.T) {
	const delay = 500 * time.Millisecond
	ts := startServer(t, Options{Faults: Faults{BootDelay: delay}})
	g := makeGuestFiles(t, ts.dir)
	ts.mustPut("vm.create", g.vmConfig())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ts.put("vm.boot", "")
	}()
	time.Sleep(delay / 5) // let the boot start first
	start := time.Now()
	ts.do(http.MethodGet, "vmm.ping", "")
	if waited := time.Since(start); waited < delay/2 {
		t.Errorf("ping answered after %v while a %v boot was in flight", waited, delay)
	}
	wg.Wait()
}

func TestEleventhConnectionGets503(t *testing.T) {
	ts := startServer(t, Options{})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range maxConnections {
		c, err := net.Dial("unix", ts.sock)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// The server counts a connection once it has accepted it.
	deadline := time.Now().Add(5 * time.Second)
	for ts.srv.conns.Load() < maxConnections && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	c, err := net.Dial("unix", ts.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", resp.StatusCode)
	}
}

func TestResponsesConformToTheSpec(t *testing.T) {
	// Up to v52 unset fields were sent as null, which the spec does not allow: only v53 on.
	for _, mode := range []Mode{V53, Head} {
		t.Run(string(mode), func(t *testing.T) {
			ts := startServer(t, Options{Mode: mode})
			g := makeGuestFiles(t, ts.dir)
			ts.enter(stateRunning, g)
			for _, action := range []string{"vmm.ping", "vm.info", "vm.counters"} {
				r := ts.do(http.MethodGet, action, "")
				req, _ := http.NewRequest(http.MethodGet, "http://localhost"+APIPrefix+action, nil)
				if err := ts.srv.spec.CheckResponse(req, r.status, r.header, r.body); err != nil {
					t.Errorf("%s: %v", action, err)
				}
			}
		})
	}
}

func TestV52SendsNullsForUnsetFields(t *testing.T) {
	ts := startServer(t, Options{Mode: V52})
	ts.mustPut("vm.create", `{"payload":{"kernel":"/k"}}`)
	var raw struct {
		Config map[string]json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(ts.do(http.MethodGet, "vm.info", "").body, &raw); err != nil {
		t.Fatal(err)
	}
	if string(raw.Config["vsock"]) != "null" {
		t.Errorf("v52 vsock = %s, want null", raw.Config["vsock"])
	}
}

func TestSpecCheckFindsAMissingOperation(t *testing.T) {
	spec, err := LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.CheckBody("vm.nope", []byte(`{}`)); !errors.Is(err, ErrNotInSpec) {
		t.Errorf("got %v, want ErrNotInSpec", err)
	}
}

// The compiled-in document is the verbatim upstream copy whose checksum SOURCE.txt records.
func TestEmbeddedSpecIsTheCopySOURCENames(t *testing.T) {
	note, err := os.ReadFile(filepath.Join("openapi", "SOURCE.txt"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^sha256:\s+([0-9a-f]{64})$`).FindSubmatch(note)
	if m == nil {
		t.Fatal("openapi/SOURCE.txt records no sha256")
	}
	if got := fmt.Sprintf("%x", sha256.Sum256(specDocument)); got != string(m[1]) {
		t.Errorf("the embedded spec has sha256 %s, SOURCE.txt records %s", got, m[1])
	}
}

func TestUndeclaredFieldsAreReported(t *testing.T) {
	spec, err := LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	err = spec.CheckBody("vm.create", []byte(`{"payload":{"kernel":"/k"},"memory":{"size":1,"hotplug_sise":2},"disks":[{"path":"/d","serail":"x"}]}`))
	if !errors.Is(err, ErrUndeclaredField) || !strings.Contains(err.Error(), "/disks/0/serail, /memory/hotplug_sise") {
		t.Errorf("got %v, want both misspelt fields reported", err)
	}
	if err := spec.CheckBody("vm.create", []byte(`{"payload":{"kernel":"/k"},"memory":{"size":1}}`)); err != nil {
		t.Errorf("a conforming body: %v", err)
	}
}

func TestBodySizeLimitIsTheModes(t *testing.T) {
	// 50 KiB up to v53, 4 MiB at head; micro_http refuses a larger body itself.
	body := fmt.Sprintf(`{"payload":{"kernel":"/k","cmdline":%q}}`, strings.Repeat("x", 60*1024))
	for _, mode := range Modes {
		t.Run(mode.String(), func(t *testing.T) {
			ts := startServer(t, Options{Mode: mode})
			r := ts.putRefusable("vm.create", body)
			want := http.StatusBadRequest
			if mode == Head {
				want = http.StatusNoContent
			}
			if r.status != want {
				t.Errorf("%d %.120s, want %d", r.status, r.body, want)
			}
			if mode != Head && !strings.Contains(string(r.body), "is larger than the limit of 51200") {
				t.Errorf("body %.200s", r.body)
			}
		})
	}
}
