package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
)

// errClosed means the QMP connection ended: QEMU closed it (it quit or died) or Close was called.
var errClosed = errors.New("QMP connection closed")

// CommandError is an error reply from QEMU to one QMP command.
type CommandError struct {
	Command string
	Class   string // e.g. GenericError, CommandNotFound, DeviceNotFound
	Desc    string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("qmp %s: %s (%s)", e.Command, e.Desc, e.Class)
}

// monitor is one QMP connection: line-delimited JSON, a greeting, qmp_capabilities, then commands
// whose replies carry the id they were sent with, and events in between. Not go-qemu's
// SocketMonitor: it dials by itself (not through host.Host), takes no context, and matches replies
// by order, so a reply its caller gave up on would be read as the next command's.
type monitor struct {
	conn    net.Conn
	version version

	writeMu sync.Mutex
	mu      sync.Mutex
	nextID  uint64
	pending map[string]chan message

	done chan struct{} // closed when the connection has ended
	err  error         // why it ended; written before done is closed
}

// version is QEMU's version as the QMP greeting gives it.
type version struct {
	QEMU struct {
		Major int `json:"major"`
		Minor int `json:"minor"`
		Micro int `json:"micro"`
	} `json:"qemu"`
	Package string `json:"package"`
}

// String is "major.minor.micro", the form Driver.Version returns.
func (v version) String() string {
	return fmt.Sprintf("%d.%d.%d", v.QEMU.Major, v.QEMU.Minor, v.QEMU.Micro)
}

// message is anything QEMU sends: the greeting, a reply, or an event (which this client ignores).
type message struct {
	QMP *struct {
		Version version `json:"version"`
	} `json:"QMP"`
	Event  string          `json:"event"`
	ID     string          `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

type request struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        string `json:"id"`
}

// dialMonitor connects to a QMP socket and negotiates capabilities. QEMU serves one QMP client at
// a time: while another holds the socket, the greeting only comes once that one has closed.
func dialMonitor(ctx context.Context, h host.Host, socket string) (*monitor, error) {
	conn, err := dialBusy(ctx, h, socket)
	if err != nil {
		return nil, err
	}
	m, err := newMonitor(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("QMP handshake on %s: %w", socket, err)
	}
	return m, nil
}

// dialBusy connects to QEMU's monitor socket. QEMU serves one QMP client at a time and keeps a
// backlog of one, so while two others talk to it a connect fails with EAGAIN: that means "busy",
// not "gone", and is retried until ctx ends (a refused connection is not retried: nobody listens).
func dialBusy(ctx context.Context, h host.Host, socket string) (net.Conn, error) {
	var conn net.Conn
	var busy error
	err := poll.Backoff(ctx, 5*time.Millisecond, 200*time.Millisecond, func(ctx context.Context) (bool, error) {
		var err error
		conn, err = h.DialUnix(ctx, socket)
		if errors.Is(err, syscall.EAGAIN) {
			busy = err
			return false, nil
		}
		return true, err
	})
	if poll.Stopped(err) {
		return nil, fmt.Errorf("%w (QEMU's monitor stayed busy with other clients)", busy)
	}
	return conn, err
}

// whileOpen is ctx, ended also when QEMU closes the connection; stop releases it.
func (m *monitor) whileOpen(ctx context.Context) (_ context.Context, stop context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-m.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// newMonitor takes over conn: it waits for QEMU's greeting and leaves command mode negotiated.
func newMonitor(ctx context.Context, conn net.Conn) (*monitor, error) {
	m := &monitor{conn: conn, pending: map[string]chan message{}, done: make(chan struct{})}
	greeting := make(chan version, 1)
	go m.read(greeting)
	select {
	case v := <-greeting:
		m.version = v
	case <-m.done:
		return nil, m.err
	case <-ctx.Done():
		_ = m.Close()
		return nil, fmt.Errorf("waiting for the QMP greeting: %w", ctx.Err())
	}
	if err := m.execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		_ = m.Close()
		return nil, err
	}
	return m, nil
}

// read dispatches QEMU's messages until the connection ends.
func (m *monitor) read(greeting chan<- version) {
	dec := json.NewDecoder(m.conn)
	for {
		var msg message
		if err := dec.Decode(&msg); err != nil {
			m.err = fmt.Errorf("%w: %v", errClosed, err)
			close(m.done)
			return
		}
		switch {
		case msg.QMP != nil:
			select {
			case greeting <- msg.QMP.Version:
			default:
			}
		case msg.Event != "":
		default:
			m.mu.Lock()
			ch := m.pending[msg.ID]
			delete(m.pending, msg.ID)
			m.mu.Unlock()
			if ch != nil {
				ch <- msg // buffered: never blocks
			}
		}
	}
}

// execute runs one command and decodes its return value into out (unless out is nil).
func (m *monitor) execute(ctx context.Context, command string, args, out any) error {
	m.mu.Lock()
	m.nextID++
	id := strconv.FormatUint(m.nextID, 10)
	reply := make(chan message, 1)
	m.pending[id] = reply
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.pending, id)
		m.mu.Unlock()
	}()

	data, err := json.Marshal(request{Execute: command, Arguments: args, ID: id})
	if err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	m.writeMu.Lock()
	_, err = m.conn.Write(append(data, '\n'))
	m.writeMu.Unlock()
	if err != nil {
		select {
		case <-m.done:
			return fmt.Errorf("qmp %s: %w", command, m.err)
		default:
			return fmt.Errorf("qmp %s: %w", command, err)
		}
	}

	var msg message
	select {
	case msg = <-reply:
	case <-m.done:
		select {
		case msg = <-reply: // the reply came just before the connection ended
		default:
			return fmt.Errorf("qmp %s: %w", command, m.err)
		}
	case <-ctx.Done():
		return fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
	if msg.Error != nil {
		return &CommandError{Command: command, Class: msg.Error.Class, Desc: msg.Error.Desc}
	}
	if out != nil {
		if err := json.Unmarshal(msg.Return, out); err != nil {
			return fmt.Errorf("qmp %s: decode %s: %w", command, msg.Return, err)
		}
	}
	return nil
}

// status is QEMU's run state ("running", "paused", "postmigrate", …).
func (m *monitor) status(ctx context.Context) (string, error) {
	var st struct {
		Status string `json:"status"`
	}
	err := m.execute(ctx, "query-status", nil, &st)
	return st.Status, err
}

// requireStatus fails unless QEMU's run state is want; when says at which step.
func (m *monitor) requireStatus(ctx context.Context, want, when string) error {
	got, err := m.status(ctx)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("QEMU's run state %s is %q, not %q", when, got, want)
	}
	return nil
}

// Close ends the connection and waits for the reader to stop.
func (m *monitor) Close() error {
	err := m.conn.Close()
	<-m.done
	return err
}
