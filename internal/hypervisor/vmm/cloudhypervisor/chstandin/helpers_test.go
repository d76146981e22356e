package chstandin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// testServer is a stand-in serving on a socket in a temporary directory.
type testServer struct {
	t      *testing.T
	srv    *Server
	dir    string
	sock   string
	client *http.Client
	log    *syncLog
}

func startServer(t *testing.T, opts Options) *testServer {
	t.Helper()
	dir := testutil.ShortTempDir(t)
	ts := &testServer{t: t, dir: dir, sock: filepath.Join(dir, "ch.sock"), log: &syncLog{}}
	opts.Log = ts.log
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Listen(ts.sock, srv.opts.Mode)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Terminate()
		<-srv.Exited()
	})
	ts.srv = srv
	ts.client = unixClient(ts.sock)
	return ts
}

// syncLog is a log the server writes while the test reads it.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func unixClient(sock string) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
		},
	}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// chain decodes an error body as CH's array of messages.
func (r reply) chain() []string {
	var msgs []string
	if err := json.Unmarshal(r.body, &msgs); err != nil {
		return []string{"<not an array: " + string(r.body) + ">"}
	}
	return msgs
}

func (ts *testServer) do(method, action, body string) reply {
	ts.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://localhost"+APIPrefix+action, rd)
	if err != nil {
		ts.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, action, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		ts.t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: data}
}

func (ts *testServer) put(action, body string) reply { return ts.do(http.MethodPut, action, body) }

// putRefusable is put for a body the server may refuse before reading it (micro_http answers an
// oversized request and closes the connection): the body is written on its own while the reply is
// read, so a write that the closed connection breaks cannot hide the answer.
func (ts *testServer) putRefusable(action, body string) reply {
	ts.t.Helper()
	c, err := net.Dial("unix", ts.sock)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	go func() {
		_, _ = fmt.Fprintf(c, "PUT %s%s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			APIPrefix, action, len(body), body)
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		ts.t.Fatalf("PUT %s: %v", action, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		ts.t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: data}
}

// mustPut fails the test unless the action succeeds.
func (ts *testServer) mustPut(action, body string) reply {
	ts.t.Helper()
	r := ts.put(action, body)
	if r.status/100 != 2 {
		ts.t.Fatalf("PUT %s: %d %s", action, r.status, r.body)
	}
	return r
}

type vmInfo struct {
	Config           map[string]any `json:"config"`
	State            string         `json:"state"`
	MemoryActualSize uint64         `json:"memory_actual_size"`
	DeviceTree       map[string]any `json:"device_tree"`
}

// info returns vm.info, or a zero vmInfo with State "" when the VMM holds no VM.
func (ts *testServer) info() vmInfo {
	ts.t.Helper()
	r := ts.do(http.MethodGet, "vm.info", "")
	var info vmInfo
	if r.status != http.StatusOK {
		return info
	}
	if err := json.Unmarshal(r.body, &info); err != nil {
		ts.t.Fatalf("vm.info: %v: %s", err, r.body)
	}
	return info
}

// guestFiles makes a kernel, an initramfs and a disk image for a VM config.
type guestFiles struct {
	kernel, initramfs, disk, serial string
}

func makeGuestFiles(t *testing.T, dir string) guestFiles {
	t.Helper()
	g := guestFiles{
		kernel:    filepath.Join(dir, "vmlinux"),
		initramfs: filepath.Join(dir, "initrd"),
		disk:      filepath.Join(dir, "disk.raw"),
		serial:    filepath.Join(dir, "serial.log"),
	}
	for _, p := range []string{g.kernel, g.initramfs} {
		if err := os.WriteFile(p, []byte("stand-in payload"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(g.disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	return g
}

const mib = 1 << 20

// vmConfig is a config like the driver's: virtio-mem hotplug, one disk with an id, a balloon.
func (g guestFiles) vmConfig() string {
	return fmt.Sprintf(`{"payload":{"kernel":%q,"initramfs":%q,"cmdline":"console=ttyS0"},
		"cpus":{"boot_vcpus":2,"max_vcpus":2},
		"memory":{"size":%d,"hotplug_method":"VirtioMem","hotplug_size":%d},
		"disks":[{"path":%q,"readonly":false,"serial":"hypeman-rootfs","image_type":"Raw","id":"rootfs"}],
		"serial":{"mode":"File","file":%q},"console":{"mode":"Off"},
		"rng":{"src":"/dev/urandom"},
		"balloon":{"size":0,"deflate_on_oom":true,"free_page_reporting":true}}`,
		g.kernel, g.initramfs, 256*mib, 256*mib, g.disk, g.serial)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
