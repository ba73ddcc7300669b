package agentctl

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
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
