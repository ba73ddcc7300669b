package portfwd

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// echo is the "guest": it answers each line with the line upper-cased and
// writes "bye" when the client half-closes.
func echo(t *testing.T) string {
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
					_, _ = io.WriteString(c, strings.ToUpper(sc.Text())+"\n")
				}
				_, _ = io.WriteString(c, "bye\n")
			}()
		}
	}()
	return ln.Addr().String()
}

func TestForwardsBothWaysWithHalfClose(t *testing.T) {
	f, err := listenTo("127.0.0.1:0", echo(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := net.Dial("tcp", f.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "hello\n")
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "HELLO\nbye\n" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestCloseEndsConnectionsAndFreesThePort(t *testing.T) {
	f, err := listenTo("127.0.0.1:0", echo(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	addr := f.Addr().String()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "x\n")
	if line, _ := bufio.NewReader(c).ReadString('\n'); line != "X\n" {
		t.Fatalf("got %q", line)
	}
	done := make(chan struct{})
	go func() { f.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung on an open connection")
	}
	again, err := listenTo(addr, "127.0.0.1:1", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("the port stayed taken after Close: %v", err)
	}
	defer again.Close()
	if twice, err := listenTo(addr, "127.0.0.1:1", slog.New(slog.DiscardHandler)); err == nil {
		twice.Close()
		t.Fatal("a port in use was bound twice")
	}
}

func listenTo(listen, target string, log *slog.Logger) (*Forwarder, error) {
	return Listen(listen, target, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", target)
	}, log)
}
