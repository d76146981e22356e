package cloudhypervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
)

// maxResponse bounds how much of a response body is read; vm.info is a few kilobytes.
const maxResponse = 4 << 20

// APIError is an error answer from the Cloud Hypervisor API.
type APIError struct {
	// Action is the API action, such as "vm.pause".
	Action string
	Status int
	// Messages is the error chain, outermost first. Servers before v47 send one line of text,
	// which becomes the only message.
	Messages []string
}

func (e *APIError) Error() string {
	msg := strings.Join(e.Messages, ": ")
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("cloud-hypervisor %s answered %d: %s", e.Action, e.Status, msg)
}

// decodeErrorBody reads every error format CH has used: a JSON array of messages (v47 on), a
// line of text (v38–v46, Debug text before), or micro_http's own {"error": …} object.
func decodeErrorBody(data []byte) []string {
	text := strings.TrimSpace(string(data))
	if text == "" {
		return nil
	}
	var chain []string
	if err := json.Unmarshal(data, &chain); err == nil {
		return chain
	}
	var obj struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(data, &obj); err == nil && obj.Error != "" {
		return []string{strings.ReplaceAll(obj.Error, "\n", " ")}
	}
	return []string{text}
}

// isNoVM reports whether err says the VMM holds no VM: a 404 from v53 on, a 500 before, both with
// "VM is not created" at the end of the chain ("VmNotCreated" in the Debug text of old releases).
func isNoVM(err error) bool {
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	text := strings.Join(apiErr.Messages, ": ")
	return strings.HasSuffix(text, "VM is not created") || strings.Contains(text, "VmNotCreated")
}

// client talks to one VMM's API socket. Keep-alive is off: the server handles one request at a
// time from any connection, so an idle pooled connection buys nothing and counts against its
// limit of ten.
type client struct {
	http   *http.Client
	socket string
}

func newClient(h host.Host, socket string) *client {
	transport := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return h.DialUnix(ctx, socket)
		},
	}
	return &client{http: &http.Client{Transport: transport}, socket: socket}
}

// do sends one API request. in, when not nil, is sent as JSON (always with a Content-Length:
// the server reads no chunked body); out, when not nil, receives the JSON answer.
func (c *client) do(ctx context.Context, method, action string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("cloud-hypervisor %s: %w", action, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost/api/v1/"+action, body)
	if err != nil {
		return fmt.Errorf("cloud-hypervisor %s: %w", action, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cloud-hypervisor %s on %s: %w", action, c.socket, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("cloud-hypervisor %s on %s: read the answer: %w", action, c.socket, err)
	}
	if resp.StatusCode/100 != 2 {
		return &APIError{Action: action, Status: resp.StatusCode, Messages: decodeErrorBody(data)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("cloud-hypervisor %s: decode the answer %q: %w", action, data, err)
	}
	return nil
}

func (c *client) put(ctx context.Context, action string, in any) error {
	return c.do(ctx, http.MethodPut, action, in, nil)
}

func (c *client) ping(ctx context.Context) (vmmPing, error) {
	var p vmmPing
	err := c.do(ctx, http.MethodGet, "vmm.ping", nil, &p)
	return p, err
}

func (c *client) info(ctx context.Context) (vmInfo, error) {
	var info vmInfo
	err := c.do(ctx, http.MethodGet, "vm.info", nil, &info)
	return info, err
}

func (c *client) close() { c.http.CloseIdleConnections() }
