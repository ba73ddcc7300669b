package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// Client calls methods on a server at a Unix socket path, one connection
// per call so that concurrent calls never share a stream.
type Client struct {
	Path string
	next atomic.Int64
}

// Call sends one request and decodes the result into result (which may be
// nil). A JSON-RPC error comes back as *Error; failing to reach the socket
// comes back as the dial error, wrapped.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", c.Path, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(aLongTimeAgo) })
	defer stop()

	return roundTrip(ctx, conn, json.NewDecoder(conn), c.next.Add(1), method, params, result)
}

// Stream calls a stream method: it sends the request on a connection of
// its own and, once the result is in, returns the connection as the
// method's byte stream. The caller closes it.
func (c *Client) Stream(ctx context.Context, method string, params, result any) (*net.UnixConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", c.Path, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(aLongTimeAgo) })
	// The answer is read a byte at a time: what follows it is the stream's.
	lr := &lineReader{r: conn}
	err = roundTrip(ctx, conn, json.NewDecoder(lr), c.next.Add(1), method, params, result)
	if err == nil {
		// The decoder stops at the value's end; the newline is not the
		// stream's either.
		_, err = io.Copy(io.Discard, lr)
	}
	if !stop() || err != nil {
		conn.Close()
		if err == nil {
			err = callErr(ctx, method, ctx.Err())
		}
		return nil, err
	}
	return conn.(*net.UnixConn), nil
}

// lineReader reads up to the end of one line, one byte at a time, and
// then reports EOF.
type lineReader struct {
	r    io.Reader
	done bool
}

func (l *lineReader) Read(p []byte) (int, error) {
	if l.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := l.r.Read(p[:1])
	if n == 1 && p[0] == '\n' {
		l.done = true
	}
	return n, err
}

// roundTrip writes one request and reads its response.
func roundTrip(ctx context.Context, conn net.Conn, dec *json.Decoder, id int64, method string, params, result any) error {
	req := struct {
		JSONRPC string `json:"jsonrpc"`
		Method  string `json:"method"`
		Params  any    `json:"params,omitempty"`
		ID      int64  `json:"id"`
	}{"2.0", method, params, id}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encoding %s request: %w", method, err)
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return callErr(ctx, method, err)
	}
	var resp struct {
		Result json.RawMessage `json:"result"`
		Error  *Error          `json:"error"`
		ID     int64           `json:"id"`
	}
	if err := dec.Decode(&resp); err != nil {
		return callErr(ctx, method, err)
	}
	if resp.Error != nil {
		return resp.Error
	}
	if resp.ID != id {
		return fmt.Errorf("%s: response id %d does not match request id %d", method, resp.ID, id)
	}
	if result != nil && len(resp.Result) > 0 {
		if err := json.Unmarshal(resp.Result, result); err != nil {
			return fmt.Errorf("decoding %s result: %w", method, err)
		}
	}
	return nil
}

func callErr(ctx context.Context, method string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("calling %s: %w", method, ctx.Err())
	}
	return fmt.Errorf("calling %s: %w", method, err)
}

// Conn is one connection for several calls in turn. Whatever the server
// ties to a connection lasts as long as it stays open, and ends when it is
// closed, including by the kernel when the process dies.
type Conn struct {
	conn net.Conn
	dec  *json.Decoder
	mu   sync.Mutex
	next int64
}

// Dial opens a connection to the server at path.
func Dial(ctx context.Context, path string) (*Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", path, err)
	}
	return &Conn{conn: conn, dec: json.NewDecoder(conn)}, nil
}

// Close hangs up.
func (c *Conn) Close() error { return c.conn.Close() }

// Call sends one request on the connection and waits for its answer.
func (c *Conn) Call(ctx context.Context, method string, params, result any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(aLongTimeAgo) })
	defer stop()
	return roundTrip(ctx, c.conn, c.dec, c.next, method, params, result)
}
