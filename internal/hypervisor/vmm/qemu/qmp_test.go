package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

const greetingLine = `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian"}, "capabilities": ["oob"]}}`

// fakeQMP serves the QEMU side of conn: the greeting, then handle's lines for each request.
func fakeQMP(t *testing.T, conn net.Conn, handle func(req request, id string) []string) {
	t.Helper()
	go func() {
		defer func() { _ = conn.Close() }()
		if _, err := fmt.Fprintln(conn, greetingLine); err != nil {
			return
		}
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			var req request
			if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
				t.Errorf("client sent invalid JSON %q: %v", sc.Text(), err)
				return
			}
			id, _ := json.Marshal(req.ID)
			lines := []string{fmt.Sprintf(`{"return": {}, "id": %s}`, id)}
			if req.Execute != "qmp_capabilities" {
				lines = handle(req, string(id))
			}
			for _, l := range lines {
				if l == "close" {
					return
				}
				if _, err := fmt.Fprintln(conn, l); err != nil {
					return
				}
			}
		}
	}()
}

func connectFake(t *testing.T, handle func(req request, id string) []string) *monitor {
	t.Helper()
	client, server := net.Pipe()
	fakeQMP(t, server, handle)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := newMonitor(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func TestMonitorReadsGreetingAndSkipsEvents(t *testing.T) {
	m := connectFake(t, func(req request, id string) []string {
		return []string{
			`{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}`,
			fmt.Sprintf(`{"return": {"status": "paused", "running": false}, "id": %s}`, id),
		}
	})
	if got := m.version.String(); got != "7.2.22" {
		t.Errorf("version = %q, want 7.2.22", got)
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := m.execute(context.Background(), "query-status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Status != "paused" {
		t.Errorf("status = %q, want paused", st.Status)
	}
}

func TestMonitorReturnsQEMUErrors(t *testing.T) {
	m := connectFake(t, func(req request, id string) []string {
		return []string{fmt.Sprintf(`{"error": {"class": "DeviceNotFound", "desc": "Device 'vmem0' not found"}, "id": %s}`, id)}
	})
	err := m.execute(context.Background(), "qom-get", qomArgs{Path: "vmem0", Property: "size"}, nil)
	var ce *CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a CommandError", err)
	}
	if ce.Class != "DeviceNotFound" || ce.Command != "qom-get" || ce.Desc != "Device 'vmem0' not found" {
		t.Errorf("CommandError = %+v", ce)
	}
}

// A reply that arrives after its caller gave up must not be taken for the next command's.
func TestMonitorDropsLateReplies(t *testing.T) {
	var firstID string
	m := connectFake(t, func(req request, id string) []string {
		if req.Execute == "slow" {
			firstID = id
			return nil // answered late, together with the next command
		}
		return []string{
			fmt.Sprintf(`{"return": "late", "id": %s}`, firstID),
			fmt.Sprintf(`{"return": "fresh", "id": %s}`, id),
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := m.execute(ctx, "slow", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow command: err = %v, want a deadline error", err)
	}
	var got string
	if err := m.execute(context.Background(), "next", nil, &got); err != nil {
		t.Fatal(err)
	}
	if got != "fresh" {
		t.Errorf("next command returned %q, want fresh", got)
	}
}

func TestMonitorReportsClosedConnection(t *testing.T) {
	m := connectFake(t, func(req request, id string) []string { return []string{"close"} })
	err := m.execute(context.Background(), "quit", nil, nil)
	if !errors.Is(err, errClosed) {
		t.Fatalf("err = %v, want errClosed", err)
	}
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		t.Fatal("done was not closed after the connection ended")
	}
}

func TestMonitorHandshakeHonoursContext(t *testing.T) {
	client, server := net.Pipe()
	defer func() { _ = server.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := newMonitor(ctx, client) // the server never greets, as while another client holds QMP
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline error", err)
	}
}
