package guestssh

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// server is an in-process SSH server that runs "exit N" style commands:
// it answers every exec with the exit status given after "exit ".
func server(t *testing.T, hostPriv string, allowed ssh.PublicKey) string {
	t.Helper()
	hostSigner, err := ssh.ParsePrivateKey([]byte(hostPriv))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(allowed.Marshal()) {
			return nil, nil
		}
		return nil, fmt.Errorf("key not allowed")
	}}
	cfg.AddHostKey(hostSigner)
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
				_, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				for nc := range chans {
					ch, chReqs, _ := nc.Accept()
					go func() {
						for r := range chReqs {
							if r.Type != "exec" {
								_ = r.Reply(false, nil)
								continue
							}
							_ = r.Reply(true, nil)
							cmd := string(r.Payload[4:])
							code := 0
							_, _ = fmt.Sscanf(strings.TrimPrefix(cmd, "exit "), "%d", &code)
							_, _ = io.WriteString(ch, "ran: "+cmd+"\n")
							_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ C uint32 }{uint32(code)}))
							ch.Close()
						}
					}()
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestPinnedHostKeyAndExitCodes(t *testing.T) {
	client, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "ssh", "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	hostPriv, hostPub, err := NewKeyPair("vm")
	if err != nil {
		t.Fatal(err)
	}
	addr := server(t, hostPriv, client.PublicKey())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := Dial(ctx, addr, client, hostPub)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out strings.Builder
	code, err := Run(ctx, c, "exit 7", nil, &out, io.Discard)
	if err != nil || code != 7 || out.String() != "ran: exit 7\n" {
		t.Fatalf("Run = %d, %v, %q", code, err, out.String())
	}
	if code, err := Run(ctx, c, "true", nil, io.Discard, io.Discard); err != nil || code != 0 {
		t.Fatalf("Run true = %d, %v", code, err)
	}

	// Any other host key is refused: banger never trusts on first use.
	_, otherPub, _ := NewKeyPair("impostor")
	if _, err := Dial(ctx, addr, client, otherPub); err == nil || !strings.Contains(err.Error(), "handshake") {
		t.Fatalf("dial with the wrong pinned key: %v", err)
	}
	if err := WaitReady(ctx, addr, client, hostPub); err != nil {
		t.Fatal(err)
	}
	if err := WaitBanner(ctx, addr, TCP(addr)); err != nil {
		t.Fatal(err)
	}

	// The key is created once and then reused.
	again, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "k"))
	if err != nil || AuthorizedKey(again) == AuthorizedKey(client) {
		t.Fatalf("a new path should make a new key: %v", err)
	}
}

func TestWaitBannerGivesUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.0 200 OK\r\n")
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := WaitBanner(ctx, ln.Addr().String(), TCP(ln.Addr().String())); err == nil || !strings.Contains(err.Error(), "no ssh greeting") {
		t.Fatalf("want a timeout naming the missing greeting, got %v", err)
	}
}

func TestExitCodeOfSuccess(t *testing.T) {
	if c, err := ExitCode(nil); c != 0 || err != nil {
		t.Fatal("nil error is exit 0")
	}
}
