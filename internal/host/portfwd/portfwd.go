// Package portfwd forwards TCP connections from a host address to a guest,
// for `--publish HOSTPORT:GUESTPORT`: one listener per published port,
// each accepted connection copied both ways to a fresh connection to the
// guest, with half-closes passed on.
package portfwd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Forwarder is one published port.
type Forwarder struct {
	ln     net.Listener
	target string
	log    *slog.Logger
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Listen binds listen (e.g. 127.0.0.1:8080) and forwards what it accepts
// to target (the guest's IP and port) until Close.
func Listen(listen, target string, log *slog.Logger) (*Forwarder, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("publishing %s: %w", listen, err)
	}
	f := &Forwarder{ln: ln, target: target, log: log, conns: map[net.Conn]struct{}{}}
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
	g, err := (&net.Dialer{}).DialContext(ctx, "tcp", f.target)
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
	var wg sync.WaitGroup
	wg.Go(func() { pipe(g, c) })
	pipe(c, g)
	wg.Wait()
}

// pipe copies src to dst, then passes the end of src on as a half-close.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	} else {
		dst.Close()
	}
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
