// Package portfwd forwards TCP connections from a host address to a guest,
// for `--publish HOSTPORT:GUESTPORT`: one listener per published port,
// each accepted connection copied both ways to a fresh connection to the
// guest, with half-closes passed on.
package portfwd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/banger-dev/banger/internal/tunnel"
)

// Dialer opens a connection to the guest port: over TCP to the guest's
// IP, or through the agent's tunnel.
type Dialer func(ctx context.Context) (net.Conn, error)

// Forwarder is one published port.
type Forwarder struct {
	ln     net.Listener
	target string
	dial   Dialer
	log    *slog.Logger
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Listen binds listen (e.g. 127.0.0.1:8080) and forwards what it accepts
// to a connection from dial (target names it in logs) until Close.
func Listen(listen, target string, dial Dialer, log *slog.Logger) (*Forwarder, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("publishing %s: %w", listen, err)
	}
	f := &Forwarder{ln: ln, target: target, dial: dial, log: log, conns: map[net.Conn]struct{}{}}
	f.wg.Go(f.accept)
	return f, nil
}

// Addr is the address listened on.
func (f *Forwarder) Addr() net.Addr { return f.ln.Addr() }

func (f *Forwarder) accept() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(50 * time.Millisecond) // out of descriptors: back off
			continue
		}
		if !f.track(c) {
			c.Close()
			return
		}
		f.wg.Go(func() {
			defer f.untrack(c)
			f.serve(c)
		})
	}
}

func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

func (f *Forwarder) serve(c net.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	g, err := f.dial(ctx)
	cancel()
	if err != nil {
		f.log.Debug("published port: guest not answering", "target", f.target, "err", err)
		return
	}
	if !f.track(g) {
		g.Close()
		return
	}
	defer f.untrack(g)
	tunnel.Join(c, g)
}

// Close stops listening and ends every forwarded connection.
func (f *Forwarder) Close() error {
	err := f.ln.Close()
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	return err
}
