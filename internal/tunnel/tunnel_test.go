package tunnel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// upperEcho is a guest service: it answers each line upper-cased and says
// "bye" when the client half-closes.
func upperEcho(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintln(c, strings.ToUpper(sc.Text()))
				}
				fmt.Fprintln(c, "bye")
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// guest serves tunnel sessions on the far end of each pipe the client
// dials, as an agent serves its port after each reconnection. Both sides
// first write stale bytes, as a virtio-serial port may hold.
type guest struct {
	t     *testing.T
	mu    sync.Mutex
	conns []net.Conn
	dials int
}

// socketPair is a connected, buffered pair (net.Pipe is unbuffered, which
// a real port is not).
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

func (g *guest) dial(ctx context.Context) (net.Conn, error) {
	host, far := socketPair(g.t)
	g.mu.Lock()
	g.conns = append(g.conns, far)
	g.dials++
	g.mu.Unlock()
	go func() {
		_, _ = far.Write([]byte("\x00\x01stale yamux frame\nOK 0000\n"))
		_ = Serve(context.Background(), far, 0, DialLoopback)
		far.Close()
	}()
	_, _ = host.Write([]byte("old\x00bytes\n"))
	return host, nil
}

// dropAll cuts every session, as a guest reboot or a daemon restart does.
func (g *guest) dropAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.conns {
		c.Close()
	}
	g.conns = nil
}

func roundTrip(t *testing.T, c *Client, port int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := c.Dial(ctx, port)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "hello\nworld\n"); err != nil {
		t.Fatal(err)
	}
	// A yamux stream's Close is its half-close: the guest service sees
	// EOF and still gets its last words back to us.
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != "HELLO\nWORLD\nbye\n" {
		t.Fatalf("through the tunnel: %q", got)
	}
}

func TestTunnelCarriesConnections(t *testing.T) {
	port := upperEcho(t)
	g := &guest{t: t}
	c := NewClient(g.dial)
	defer c.Close()
	roundTrip(t, c, port)

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { roundTrip(t, c, port) })
	}
	wg.Wait()
	if g.dials != 1 {
		t.Fatalf("%d sessions for 9 connections; want one shared", g.dials)
	}
}

func TestTunnelRefusedPortKeepsSession(t *testing.T) {
	port := upperEcho(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	g := &guest{t: t}
	c := NewClient(g.dial)
	defer c.Close()
	_, err := c.Dial(context.Background(), closed)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dialing a closed guest port: %v", err)
	}
	roundTrip(t, c, port)
	if g.dials != 1 {
		t.Fatalf("a refused port cost the session: %d dials", g.dials)
	}
	if _, err := c.Dial(context.Background(), 0); err == nil {
		t.Fatal("port 0 accepted")
	}
}

func TestTunnelReopensAfterTheGuestGoes(t *testing.T) {
	port := upperEcho(t)
	g := &guest{t: t}
	c := NewClient(g.dial)
	defer c.Close()
	roundTrip(t, c, port)
	g.dropAll()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := c.Dial(ctx, port)
		cancel()
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new session after the old one broke: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	roundTrip(t, c, port)
	if g.dials < 2 {
		t.Fatalf("%d dials: the session was not reopened", g.dials)
	}
}

func TestTunnelHandshakeTimesOut(t *testing.T) {
	old := HandshakeTimeout
	HandshakeTimeout = 200 * time.Millisecond
	defer func() { HandshakeTimeout = old }()
	silent := func(context.Context) (net.Conn, error) {
		host, far := socketPair(t)
		go func() { _, _ = io.Copy(io.Discard, far) }()
		return host, nil
	}
	c := NewClient(silent)
	defer c.Close()
	start := time.Now()
	_, err := c.Dial(context.Background(), 22)
	if err == nil || !strings.Contains(err.Error(), "banger-agent") {
		t.Fatalf("a guest that never answers: %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("the handshake took %s", time.Since(start))
	}
	c.Close()
	if _, err := c.Dial(context.Background(), 22); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("dial after close: %v", err)
	}
}
