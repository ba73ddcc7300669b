package agentctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/guest"
)

// fakeVsock plays Firecracker's vsock socket with an agent behind it: it
// expects "CONNECT <port>", answers "OK", sends ready, and acks shutdown.
func fakeVsock(t *testing.T, accept bool) string {
	t.Helper()
	dir, _ := os.MkdirTemp("", "vsock")
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "v.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				line, _ := r.ReadString('\n')
				if !accept || strings.TrimSpace(line) != "CONNECT 1024" {
					return // Firecracker closes the connection on refusal
				}
				_, _ = c.Write([]byte("OK 1073741824\n"))
				enc := json.NewEncoder(c)
				_ = enc.Encode(guest.Message{Type: guest.MsgReady})
				for {
					l, err := r.ReadBytes('\n')
					if err != nil {
						return
					}
					var m guest.Message
					if json.Unmarshal(l, &m) == nil && m.Type == guest.MsgShutdown {
						_ = enc.Encode(guest.Message{Type: guest.MsgAck})
					}
				}
			}()
		}
	}()
	return path
}

func TestFirecrackerVsockHandshake(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	path := fakeVsock(t, true)
	c, err := Dial(ctx, DialerFor(path, ProtoFirecrackerVsock))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitFor(ctx, guest.MsgReady); err != nil {
		t.Fatalf("ready through the handshake: %v", err)
	}
	c.Close()
	if err := Shutdown(ctx, DialerFor(path, ProtoFirecrackerVsock)); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestFirecrackerVsockRefused(t *testing.T) {
	path := fakeVsock(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := FirecrackerVsockDialer(path, guest.VsockPort)(ctx); err == nil {
		t.Fatal("a refused CONNECT was accepted")
	}
}

// fakeClockAgent answers the clock protocol with a clock 2 s behind, and
// first replays a late answer meant for an earlier connection.
func fakeClockAgent(t *testing.T, c net.Conn, how string) {
	t.Helper()
	go func() {
		defer c.Close()
		r := bufio.NewReader(c)
		enc := json.NewEncoder(c)
		_ = enc.Encode(guest.Message{Type: guest.MsgClock, ID: "stale", Time: 1})
		for {
			l, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var m guest.Message
			if json.Unmarshal(l, &m) != nil {
				continue
			}
			switch m.Type {
			case guest.MsgClockQuery:
				_ = enc.Encode(guest.Message{Type: guest.MsgHeartbeat})
				_ = enc.Encode(guest.Message{Type: guest.MsgClock, ID: m.ID, Time: time.Now().Add(-2 * time.Second).UnixNano()})
			case guest.MsgClockAdjust:
				_ = enc.Encode(guest.Message{Type: guest.MsgClockDone, ID: "stale", Detail: guest.ClockSlewed})
				_ = enc.Encode(guest.Message{Type: guest.MsgClockDone, ID: m.ID, Detail: how, Offset: m.Offset})
			}
		}
	}()
}

// socketPair is a buffered stream pair (net.Pipe is not: the fake's
// unasked-for first write would block it).
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

func TestSyncClock(t *testing.T) {
	host, agent := socketPair(t)
	fakeClockAgent(t, agent, guest.ClockStepped)
	c := &Conn{c: host, r: bufio.NewReader(host), enc: json.NewEncoder(host)}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cs, err := c.SyncClock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cs.Offset - 2*time.Second; d < -cs.RTT || d > cs.RTT || cs.How != guest.ClockStepped {
		t.Fatalf("got %+v, want an offset of 2s ± the round trip, stepped", cs)
	}
}

func TestSyncClockRefused(t *testing.T) {
	host, agent := socketPair(t)
	fakeClockAgent(t, agent, "setting the clock: operation not permitted")
	c := &Conn{c: host, r: bufio.NewReader(host), enc: json.NewEncoder(host)}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.SyncClock(ctx); !errors.Is(err, ErrClockNotSet) {
		t.Fatalf("got %v, want ErrClockNotSet", err)
	}
}

// Watch returns ErrSilent when the agent stops talking, and nothing while
// it keeps sending; a message split across the watch's reads survives.
func TestWatch(t *testing.T) {
	host, agent := socketPair(t)
	c := &Conn{c: host, r: bufio.NewReader(host), enc: json.NewEncoder(host)}
	defer c.Close()
	go func() {
		for range 5 {
			_, _ = agent.Write([]byte(`{"type":"heart`))
			time.Sleep(30 * time.Millisecond)
			_, _ = agent.Write([]byte("beat\"}\n"))
			time.Sleep(30 * time.Millisecond)
		}
		_, _ = agent.Write([]byte(`{"type":"ready"}` + "\n"))
		// then silence
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := c.Watch(ctx, 200*time.Millisecond)
	if !errors.Is(err, ErrSilent) {
		t.Fatalf("watch: %v, want ErrSilent", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("silent after %v, while the agent was still talking", d)
	}
	quiet, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	go func() { time.Sleep(20 * time.Millisecond); _, _ = agent.Write([]byte(`{"type":"heartbeat"}` + "\n")) }()
	if err := c.Watch(quiet, time.Second); err != nil {
		t.Fatalf("watch ended by its context: %v", err)
	}
}
