package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
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

	id := c.next.Add(1)
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
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
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
