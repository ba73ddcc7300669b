// Package tunnel carries TCP connections between the host and a guest's
// own ports over one byte stream that is not a network: a virtio-serial
// port (QEMU) or a vsock connection (Firecracker). It is how banger reaches
// a VM that has no network at all (`--network none`): its SSH and its
// published ports.
//
// A session starts with a handshake: the host sends "BANGER-TUNNEL/1
// NONCE\n" and the guest answers "OK NONCE\n". Each side skips whatever
// came before, since a virtio-serial port can still hold bytes of an
// earlier session. After that the stream is a yamux session (the host is
// the client); each connection is a yamux stream that begins with the
// guest port as two big-endian bytes and the guest's one-line answer, "ok"
// or "error TEXT".
package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

const helloPrefix = "BANGER-TUNNEL/1 "

// maxLine bounds a handshake or answer line; longer lines are stale data.
const maxLine = 256

// HandshakeTimeout bounds the host's wait for the guest's answer when the
// context sets no deadline.
var HandshakeTimeout = 5 * time.Second

// ErrRefused is a guest's refusal of one connection (nothing listens on
// the port, say); the session itself is fine.
var ErrRefused = errors.New("the guest refused the connection")

func config() *yamux.Config {
	c := yamux.DefaultConfig()
	c.LogOutput = io.Discard
	// A TCG guest under load can take a while to drain a window; the
	// session is local, so a slow write is not a dead peer.
	c.ConnectionWriteTimeout = 30 * time.Second
	return c
}

// bufferedConn reads through the handshake's buffer, so bytes that came
// right after it reach yamux.
type bufferedConn struct {
	io.Reader
	io.WriteCloser
}

// Client is the host's end of one VM's tunnel. It opens the session on
// first use and again after it breaks (the VM rebooted, the daemon
// reconnected), so callers just Dial.
type Client struct {
	dial func(ctx context.Context) (net.Conn, error)

	// mu guards sess and closed; it is held while a session is opened.
	mu     sync.Mutex
	sess   *yamux.Session
	closed bool
}

// NewClient makes a client that reaches the guest's end through dial.
func NewClient(dial func(ctx context.Context) (net.Conn, error)) *Client {
	return &Client{dial: dial}
}

// Dial connects to the guest's TCP port on its loopback.
func (c *Client) Dial(ctx context.Context, port int) (net.Conn, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("guest port %d is not 1-65535", port)
	}
	sess, err := c.session(ctx)
	if err != nil {
		return nil, err
	}
	st, err := sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("opening a tunnel stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = st.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var hdr [2]byte
	binary.BigEndian.PutUint16(hdr[:], uint16(port))
	if _, err := st.Write(hdr[:]); err != nil {
		st.Close()
		return nil, fmt.Errorf("asking the guest for port %d: %w", port, err)
	}
	answer, err := readLine(st)
	if err != nil {
		st.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("waiting for the guest's answer for port %d: %w", port, err)
	}
	if answer != "ok" {
		st.Close()
		return nil, fmt.Errorf("%w: port %d: %s", ErrRefused, port, strings.TrimPrefix(answer, "error "))
	}
	_ = st.SetDeadline(time.Time{})
	return st, nil
}

// session returns the open session, opening one when there is none.
func (c *Client) session(ctx context.Context) (*yamux.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, net.ErrClosed
	}
	if c.sess != nil && !c.sess.IsClosed() {
		return c.sess, nil
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to the guest's tunnel: %w", err)
	}
	br, err := hostHandshake(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	sess, err := yamux.Client(bufferedConn{br, conn}, config())
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("starting the tunnel session: %w", err)
	}
	c.sess = sess
	return sess, nil
}

// hostHandshake sends the hello and waits for its answer, skipping stale
// bytes. It returns the reader holding whatever followed the answer.
func hostHandshake(ctx context.Context, conn net.Conn) (*bufio.Reader, error) {
	nonce := make([]byte, 8)
	_, _ = rand.Read(nonce)
	n := hex.EncodeToString(nonce)
	deadline, ok := ctx.Deadline()
	if !ok || time.Until(deadline) > HandshakeTimeout {
		deadline = time.Now().Add(HandshakeTimeout)
	}
	_ = conn.SetDeadline(deadline)
	defer func() { _ = conn.SetDeadline(time.Time{}) }()
	if _, err := io.WriteString(conn, helloPrefix+n+"\n"); err != nil {
		return nil, fmt.Errorf("greeting the guest's tunnel: %w", err)
	}
	br := bufio.NewReaderSize(conn, 4096)
	want := "OK " + n
	for {
		line, err := readLineFrom(br)
		if err != nil {
			return nil, fmt.Errorf("waiting for the guest's tunnel (is banger-agent running?): %w", err)
		}
		if line == want {
			return br, nil
		}
	}
}

// Close ends the session and every connection through it.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.sess != nil {
		return c.sess.Close()
	}
	return nil
}

// Serve runs one guest-side session on rw: it waits for a hello, then
// serves connections until rw fails or ctx ends. dial opens a guest port.
// retry is how long to wait after reading EOF before the host's hello (a
// virtio-serial port reads EOF while no host is connected); 0 makes EOF
// end the session.
func Serve(ctx context.Context, rw io.ReadWriteCloser, retry time.Duration, dial func(ctx context.Context, port int) (net.Conn, error)) error {
	br := bufio.NewReaderSize(rw, 4096)
	for {
		line, err := readLineFrom(br)
		if errors.Is(err, io.EOF) && retry > 0 && ctx.Err() == nil {
			time.Sleep(retry)
			continue
		}
		if err != nil {
			return fmt.Errorf("waiting for the host's hello: %w", err)
		}
		if nonce, ok := strings.CutPrefix(line, helloPrefix); ok {
			if _, err := io.WriteString(rw, "OK "+nonce+"\n"); err != nil {
				return fmt.Errorf("answering the host's hello: %w", err)
			}
			break
		}
	}
	sess, err := yamux.Server(bufferedConn{br, rw}, config())
	if err != nil {
		return fmt.Errorf("starting the tunnel session: %w", err)
	}
	defer sess.Close()
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("tunnel session ended: %w", err)
		}
		wg.Go(func() { serveStream(ctx, st, dial) })
	}
}

func serveStream(ctx context.Context, st *yamux.Stream, dial func(ctx context.Context, port int) (net.Conn, error)) {
	defer st.Close()
	_ = st.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(st, hdr[:]); err != nil {
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	port := int(binary.BigEndian.Uint16(hdr[:]))
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	g, err := dial(dctx, port)
	cancel()
	if err != nil {
		_, _ = io.WriteString(st, "error "+oneLine(err.Error())+"\n")
		return
	}
	defer g.Close()
	if _, err := io.WriteString(st, "ok\n"); err != nil {
		return
	}
	Join(st, g)
}

// DialLoopback opens a guest port on the guest's loopback: the dial a
// guest's Serve uses.
func DialLoopback(ctx context.Context, port int) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)))
}

// Join copies a to b and b to a until both directions end, passing each
// end on as a half-close where the connection has one. The caller closes
// both afterwards.
func Join(a, b io.ReadWriteCloser) {
	var wg sync.WaitGroup
	wg.Go(func() { pipe(a, b) })
	pipe(b, a)
	wg.Wait()
}

// pipe copies src to dst, then passes the end of src on: a half-close
// where dst has one, else a close (a yamux stream's Close is a half-close).
func pipe(dst io.WriteCloser, src io.Reader) {
	_, _ = io.Copy(dst, src)
	if hc, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
	} else {
		dst.Close()
	}
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > maxLine-8 {
		s = s[:maxLine-8]
	}
	return s
}

// readLine reads one short line byte by byte, so nothing after it is
// consumed.
func readLine(r io.Reader) (string, error) {
	var line []byte
	b := make([]byte, 1)
	for len(line) < maxLine {
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		if b[0] == '\n' {
			return string(line), nil
		}
		line = append(line, b[0])
	}
	return "", errors.New("the guest's answer is too long")
}

// readLineFrom reads one line from br; an over-long line is skipped whole
// (it is stale binary data), and comes back empty.
func readLineFrom(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = br.ReadSlice('\n')
		}
		if err != nil {
			return "", err
		}
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))), nil
}
