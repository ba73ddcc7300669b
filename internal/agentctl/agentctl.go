// Package agentctl is the host end of the control channel to banger-agent
// inside a guest: waiting for the agent's ready message, asking for a
// clean shutdown, keeping the guest's clock on the host's, and giving a
// restored guest its identity. The channel is line-delimited JSON (guest.Message) over a
// stream that the VMM driver exposes as a Unix socket.
package agentctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/banger-dev/banger/internal/guest"
)

// Dialer opens a stream to the agent.
type Dialer func(ctx context.Context) (net.Conn, error)

// UnixDialer dials a Unix socket (QEMU's virtio-serial chardev).
func UnixDialer(path string) Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}

// Control protocols a driver may expose (vmm.Handles.ControlProto).
const (
	// ProtoUnix is a plain stream socket (QEMU's virtio-serial chardev).
	ProtoUnix = ""
	// ProtoFirecrackerVsock is Firecracker's vsock-over-Unix-socket: the
	// host connects to the socket and asks for a guest port with
	// "CONNECT <port>\n", answered by "OK <hostport>\n".
	ProtoFirecrackerVsock = "firecracker-vsock"
)

// DialerFor picks the dialer for a driver's control socket and protocol.
func DialerFor(socket, proto string) Dialer {
	if proto == ProtoFirecrackerVsock {
		return FirecrackerVsockDialer(socket, guest.VsockPort)
	}
	return UnixDialer(socket)
}

// TunnelDialerFor is DialerFor for the agent's tunnel (package tunnel).
func TunnelDialerFor(socket, proto string) Dialer {
	if proto == ProtoFirecrackerVsock {
		return FirecrackerVsockDialer(socket, guest.TunnelVsockPort)
	}
	return UnixDialer(socket)
}

// FirecrackerVsockDialer connects to guest port through Firecracker's
// vsock Unix socket.
func FirecrackerVsockDialer(path string, port int) Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetDeadline(dl)
		}
		if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
			c.Close()
			return nil, fmt.Errorf("vsock connect: %w", err)
		}
		// Read the answer byte by byte so nothing after it is swallowed.
		var line []byte
		b := make([]byte, 1)
		for len(line) < 64 {
			if _, err := c.Read(b); err != nil {
				c.Close()
				return nil, fmt.Errorf("vsock connect: %w", err)
			}
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
		}
		if !strings.HasPrefix(string(line), "OK ") {
			c.Close()
			return nil, fmt.Errorf("vsock connect to port %d refused: %q", port, line)
		}
		_ = c.SetDeadline(time.Time{})
		return c, nil
	}
}

// Conn is an open control channel.
type Conn struct {
	c       net.Conn
	r       *bufio.Reader
	enc     *json.Encoder
	partial []byte // a line a cancelled read cut short
}

// Dial connects, retrying until ctx ends (the VMM may not have created the
// socket yet).
func Dial(ctx context.Context, dial Dialer) (*Conn, error) {
	for {
		c, err := dial(ctx)
		if err == nil {
			return &Conn{c: c, r: bufio.NewReader(c), enc: json.NewEncoder(c)}, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connecting to the guest agent: %w (last error: %w)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close closes the channel.
func (c *Conn) Close() error { return c.c.Close() }

// next reads one message, honouring ctx. A read cut off by ctx keeps what
// it had of a line for the next call, so the connection stays usable.
func (c *Conn) next(ctx context.Context) (guest.Message, error) {
	_ = c.c.SetReadDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { _ = c.c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	line, err := c.r.ReadBytes('\n')
	c.partial = append(c.partial, line...)
	if err == nil {
		line, c.partial = c.partial, nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return guest.Message{}, ctx.Err()
		}
		return guest.Message{}, fmt.Errorf("reading from the guest agent: %w", err)
	}
	var m guest.Message
	if err := json.Unmarshal(line, &m); err != nil {
		// Noise before the agent opened the port; skip it.
		return guest.Message{Type: ""}, nil
	}
	return m, nil
}

// WaitFor reads until a message of type typ arrives.
func (c *Conn) WaitFor(ctx context.Context, typ string) (guest.Message, error) {
	for {
		m, err := c.next(ctx)
		if err != nil {
			return m, err
		}
		if m.Type == typ {
			return m, nil
		}
	}
}

// waitAnswer reads until the message of type typ answering request id.
func (c *Conn) waitAnswer(ctx context.Context, typ, id string) (guest.Message, error) {
	for {
		m, err := c.WaitFor(ctx, typ)
		if err != nil || m.ID == id {
			return m, err
		}
	}
}

// Send writes one message.
func (c *Conn) Send(m guest.Message) error {
	if err := c.enc.Encode(m); err != nil {
		return fmt.Errorf("writing to the guest agent: %w", err)
	}
	return nil
}

// Shutdown asks the agent for a clean poweroff and waits for its ack.
func Shutdown(ctx context.Context, dial Dialer) error {
	c, err := Dial(ctx, dial)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Send(guest.Message{Type: guest.MsgShutdown}); err != nil {
		return err
	}
	if _, err := c.WaitFor(ctx, guest.MsgAck); err != nil {
		return fmt.Errorf("waiting for the guest agent to acknowledge shutdown: %w", err)
	}
	return nil
}

// ErrSilent means the agent sent nothing, not even a heartbeat (every 5 s),
// for longer than a watch allowed: the guest hangs.
var ErrSilent = errors.New("the guest agent went silent")

// Watch reads the agent's messages until ctx ends and returns nil then,
// or ErrSilent once nothing has arrived for quiet.
func (c *Conn) Watch(ctx context.Context, quiet time.Duration) error {
	for {
		rctx, cancel := context.WithTimeout(ctx, quiet)
		_, err := c.next(rctx)
		cancel()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("%w for %s", ErrSilent, quiet)
		default:
			return err
		}
	}
}

// ClockSync is the outcome of one exchange of the clock protocol.
type ClockSync struct {
	// Offset is how far the guest's clock was behind the host's (negative:
	// ahead) before the agent corrected it.
	Offset time.Duration
	// RTT bounds the error of Offset: the reading happened somewhere in
	// that round trip.
	RTT time.Duration
	// How is guest.ClockStepped or guest.ClockSlewed.
	How string
}

// ErrClockNotSet means the agent answered but could not move its clock.
var ErrClockNotSet = errors.New("the guest agent did not set its clock")

// clockQueries numbers clock and identity queries, so an answer that arrives on a later
// connection (a virtio-serial port outlives them) is not taken for the
// answer to that connection's query.
var clockQueries atomic.Uint64

// clockSamples is how many readings one exchange takes; the one with the
// shortest round trip is used. A busy guest answers late, and a late
// answer makes the midpoint estimate wrong by up to half the round trip.
const clockSamples = 4

// SyncClock measures the guest's clock against the host's (the midpoint
// of a round trip is when the guest read it; the shortest of a few round
// trips is trusted) and has the agent correct it.
func (c *Conn) SyncClock(ctx context.Context) (ClockSync, error) {
	id := fmt.Sprintf("%d-%d", os.Getpid(), clockQueries.Add(1))
	var cs ClockSync
	for i := range clockSamples {
		qid := fmt.Sprintf("%s.%d", id, i)
		sent := time.Now()
		if err := c.Send(guest.Message{Type: guest.MsgClockQuery, ID: qid}); err != nil {
			return ClockSync{}, err
		}
		reading, err := c.waitAnswer(ctx, guest.MsgClock, qid)
		if err != nil {
			return ClockSync{}, fmt.Errorf("waiting for the guest's clock: %w", err)
		}
		rtt := time.Since(sent)
		if i == 0 || rtt < cs.RTT {
			mid := sent.Add(rtt / 2)
			cs = ClockSync{Offset: time.Duration(mid.UnixNano() - reading.Time), RTT: rtt}
		}
	}
	if err := c.Send(guest.Message{Type: guest.MsgClockAdjust, ID: id, Offset: int64(cs.Offset)}); err != nil {
		return cs, err
	}
	done, err := c.waitAnswer(ctx, guest.MsgClockDone, id)
	if err != nil {
		return cs, fmt.Errorf("waiting for the guest to set its clock: %w", err)
	}
	if done.Detail != guest.ClockStepped && done.Detail != guest.ClockSlewed {
		return cs, fmt.Errorf("%w: %s", ErrClockNotSet, done.Detail)
	}
	cs.How = done.Detail
	return cs, nil
}

// ErrIdentityRefused means the agent answered but could not take the
// identity it was given.
var ErrIdentityRefused = errors.New("the guest agent did not take its new identity")

// Identify has the agent make the guest the VM id describes (see
// guest.Identity), and waits until it has.
func (c *Conn) Identify(ctx context.Context, id guest.Identity) error {
	qid := fmt.Sprintf("%d-%d-identity", os.Getpid(), clockQueries.Add(1))
	if err := c.Send(guest.Message{Type: guest.MsgIdentity, ID: qid, Identity: &id}); err != nil {
		return err
	}
	done, err := c.waitAnswer(ctx, guest.MsgIdentityDone, qid)
	if err != nil {
		return fmt.Errorf("waiting for the guest to take its identity: %w", err)
	}
	if done.Detail != "" {
		return fmt.Errorf("%w: %s", ErrIdentityRefused, done.Detail)
	}
	return nil
}
