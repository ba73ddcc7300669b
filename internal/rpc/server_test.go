package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/api"
)

type echoParams struct {
	Text string `json:"text"`
}

func startServer(t *testing.T, authorize func(Caller, Access) error) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rpc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	methods := map[string]Method{
		"echo": {Access: AccessMember, Handler: Typed(func(_ context.Context, _ Caller, p echoParams) (echoParams, error) {
			return p, nil
		})},
		"whoami": {Access: AccessAny, Handler: func(_ context.Context, c Caller, _ json.RawMessage) (any, error) {
			return c, nil
		}},
		"fail":  {Handler: func(context.Context, Caller, json.RawMessage) (any, error) { return nil, errors.New("boom") }},
		"panic": {Handler: func(context.Context, Caller, json.RawMessage) (any, error) { panic("kaboom") }},
		// upper streams back what it is sent, upper-cased, then "bye"
		// after the client's half-close.
		"upper": {Access: AccessMember, Stream: func(_ context.Context, _ Caller, p json.RawMessage) (any, func(Stream), error) {
			if string(p) == `"refuse"` {
				return nil, nil, errors.New("refused")
			}
			return map[string]string{"ok": "yes"}, func(c Stream) {
				b, _ := io.ReadAll(c)
				_, _ = c.Write(append(bytes.ToUpper(b), "bye"...))
				_ = c.CloseWrite()
			}, nil
		}},
	}
	mapErr := func(err error) *Error { return &Error{Code: api.CodeConflict, Message: "mapped: " + err.Error()} }
	srv := NewServer(methods, authorize, mapErr, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return path
}

// exchange writes raw bytes and reads one response line.
func exchange(t *testing.T, path, raw string) map[string]any {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(raw + "\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		t.Fatalf("reading response to %q: %v", raw, err)
	}
	var out map[string]any
	if err := json.Unmarshal(line, &out); err != nil {
		t.Fatalf("response %q is not an object: %v", line, err)
	}
	return out
}

func errCode(t *testing.T, resp map[string]any) int {
	t.Helper()
	e, ok := resp["error"].(map[string]any)
	if !ok {
		t.Fatalf("want an error response, got %v", resp)
	}
	return int(e["code"].(float64))
}

func TestFraming(t *testing.T) {
	path := startServer(t, nil)
	cases := []struct {
		name, raw string
		code      int
	}{
		{"malformed json", `{"jsonrpc":"2.0",`, api.CodeParseError},
		{"not json at all", `hello`, api.CodeParseError},
		{"unknown method", `{"jsonrpc":"2.0","method":"nope","id":1}`, api.CodeMethodNotFound},
		{"wrong params type", `{"jsonrpc":"2.0","method":"echo","params":{"text":42},"id":1}`, api.CodeInvalidParams},
		{"params not an object", `{"jsonrpc":"2.0","method":"echo","params":"x","id":1}`, api.CodeInvalidParams},
		{"unknown param", `{"jsonrpc":"2.0","method":"echo","params":{"txt":"a"},"id":1}`, api.CodeInvalidParams},
		{"missing jsonrpc", `{"method":"echo","id":1}`, api.CodeInvalidRequest},
		{"wrong version", `{"jsonrpc":"1.0","method":"echo","id":1}`, api.CodeInvalidRequest},
		{"missing method", `{"jsonrpc":"2.0","id":1}`, api.CodeInvalidRequest},
		{"bad id type", `{"jsonrpc":"2.0","method":"echo","id":{}}`, api.CodeInvalidRequest},
		{"request is a number", `42`, api.CodeInvalidRequest},
		{"empty batch", `[]`, api.CodeInvalidRequest},
		{"empty object", `{}`, api.CodeInvalidRequest},
		{"null", `null`, api.CodeInvalidRequest},
		{"id-less request without method", `{"jsonrpc":"2.0"}`, api.CodeInvalidRequest},
		{"batch too big", "[" + strings.Repeat(`{"jsonrpc":"2.0","method":"echo","id":1},`, MaxBatch) + `{"jsonrpc":"2.0","method":"echo","id":1}]`, api.CodeInvalidRequest},
		{"handler error goes through mapper", `{"jsonrpc":"2.0","method":"fail","id":1}`, api.CodeConflict},
		{"handler panic", `{"jsonrpc":"2.0","method":"panic","id":1}`, api.CodeInternal},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := exchange(t, path, c.raw)
			if got := errCode(t, resp); got != c.code {
				t.Fatalf("code = %d, want %d (%v)", got, c.code, resp)
			}
			if resp["jsonrpc"] != "2.0" {
				t.Fatalf("response lacks jsonrpc 2.0: %v", resp)
			}
		})
	}
	// The server is still alive after all of that.
	resp := exchange(t, path, `{"jsonrpc":"2.0","method":"echo","params":{"text":"hi"},"id":"x"}`)
	if resp["id"] != "x" || resp["result"].(map[string]any)["text"] != "hi" {
		t.Fatalf("echo after errors: %v", resp)
	}
}

func TestBatchAndNotification(t *testing.T) {
	path := startServer(t, nil)
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A notification gets no answer; the batch that follows gets two.
	_, _ = conn.Write([]byte(`{"jsonrpc":"2.0","method":"echo","params":{"text":"n"}}` + "\n"))
	_, _ = conn.Write([]byte(`[{"jsonrpc":"2.0","method":"echo","params":{"text":"a"},"id":1},{"jsonrpc":"2.0","method":"nope","id":2},{"jsonrpc":"2.0","method":"echo"}]` + "\n"))
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var batch []map[string]any
	if err := json.Unmarshal(line, &batch); err != nil {
		t.Fatalf("want a batch response, got %s", line)
	}
	if len(batch) != 2 {
		t.Fatalf("want 2 responses, got %s", line)
	}
}

func TestClientAndPeerCredentials(t *testing.T) {
	path := startServer(t, nil)
	c := &Client{Path: path}
	var who Caller
	if err := c.Call(context.Background(), "whoami", nil, &who); err != nil {
		t.Fatal(err)
	}
	if who.UID != uint32(os.Getuid()) || who.PID != int32(os.Getpid()) || who.GID != uint32(os.Getgid()) {
		t.Fatalf("peer credentials %+v do not match this process", who)
	}
	err := c.Call(context.Background(), "nope", nil, nil)
	var rerr *Error
	if !errors.As(err, &rerr) || rerr.Code != api.CodeMethodNotFound {
		t.Fatalf("want method-not-found *Error, got %v", err)
	}
}

func TestAuthorizeFromMethodTable(t *testing.T) {
	deny := func(c Caller, a Access) error {
		if a == AccessAny {
			return nil
		}
		return errors.New("permission denied: not in group")
	}
	path := startServer(t, deny)
	c := &Client{Path: path}
	err := c.Call(context.Background(), "echo", echoParams{Text: "x"}, nil)
	var rerr *Error
	if !errors.As(err, &rerr) || rerr.Code != api.CodePermissionDenied || !strings.Contains(rerr.Message, "not in group") {
		t.Fatalf("want permission denied, got %v", err)
	}
	if err := c.Call(context.Background(), "whoami", nil, nil); err != nil {
		t.Fatalf("AccessAny method refused: %v", err)
	}
}

func TestCallerInGroup(t *testing.T) {
	c := Caller{GID: 10, Groups: []uint32{20, 30}}
	for _, g := range []uint32{10, 20, 30} {
		if !c.InGroup(g) {
			t.Errorf("InGroup(%d) = false", g)
		}
	}
	if c.InGroup(40) {
		t.Error("InGroup(40) = true")
	}
}

// flakyListener fails its first Accepts the way a process out of file
// descriptors does.
type flakyListener struct {
	net.Listener
	fails int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

func TestAbuseIsBounded(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	inner, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	methods := map[string]Method{
		"echo":  {Handler: Typed(func(_ context.Context, _ Caller, p echoParams) (echoParams, error) { return p, nil })},
		"block": {Handler: func(context.Context, Caller, json.RawMessage) (any, error) { <-release; return nil, nil }},
	}
	srv := NewServer(methods, nil, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, &flakyListener{Listener: inner, fails: 5}) }()
	defer func() {
		close(release)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	old := LineTimeout
	LineTimeout = 300 * time.Millisecond
	defer func() { LineTimeout = old }()

	// Transient accept errors do not stop the server.
	if resp := exchange(t, path, `{"jsonrpc":"2.0","method":"echo","params":{"text":"a"},"id":1}`); resp["result"] == nil {
		t.Fatalf("after accept errors: %v", resp)
	}

	// A half-written line is cut off after LineTimeout with an error.
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte(`{"jsonrpc":"2.0",`))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	conn.Close()
	if err != nil || !strings.Contains(string(line), "longer than") {
		t.Fatalf("half line: %q, %v", line, err)
	}

	// Past MaxConns connections, new ones are refused with an error while
	// the others keep their service.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < MaxConns; i++ {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		// Make sure each is being served before the next.
		if _, err := c.Write([]byte(`{"jsonrpc":"2.0","method":"echo","params":{"text":"x"},"id":1}` + "\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := bufio.NewReader(c).ReadBytes('\n'); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	resp := exchange(t, path, `{"jsonrpc":"2.0","method":"echo","params":{"text":"x"},"id":1}`)
	if errCode(t, resp) != api.CodeUnavailable {
		t.Fatalf("connection past the limit: %v", resp)
	}
	conns[0].Close()
	conns = conns[1:]
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp := exchange(t, path, `{"jsonrpc":"2.0","method":"echo","params":{"text":"x"},"id":1}`)
		if resp["result"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a freed connection slot was not reused: %v", resp)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Caller.Gone closes when the caller hangs up, so work can be tied to a
// connection; calls on one Conn share it.
func TestCallerGoneOnHangup(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	hung := make(chan struct{})
	calls := 0
	methods := map[string]Method{
		"tie": {Handler: func(_ context.Context, c Caller, _ json.RawMessage) (any, error) {
			calls++
			if calls == 1 {
				go func() { <-c.Gone; close(hung) }()
			}
			return calls, nil
		}},
	}
	srv := NewServer(methods, nil, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	conn, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for want := 1; want <= 2; want++ {
		if err := conn.Call(context.Background(), "tie", nil, &n); err != nil || n != want {
			t.Fatalf("call %d on one connection: %d, %v", want, n, err)
		}
	}
	select {
	case <-hung:
		t.Fatal("Gone closed while the connection is open")
	case <-time.After(100 * time.Millisecond):
	}
	conn.Close()
	select {
	case <-hung:
	case <-time.After(5 * time.Second):
		t.Fatal("Gone did not close when the caller hung up")
	}
}

func TestStreamMethod(t *testing.T) {
	old := LineTimeout
	LineTimeout = 200 * time.Millisecond // a stream outlives the answer's write deadline
	defer func() { LineTimeout = old }()
	path := startServer(t, nil)
	c := &Client{Path: path}
	ctx := context.Background()
	var res map[string]string
	conn, err := c.Stream(ctx, "upper", "go", &res)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if res["ok"] != "yes" {
		t.Fatalf("stream result: %v", res)
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := io.WriteString(conn, "hello stream\n{not json"); err != nil {
		t.Fatal(err)
	}
	_ = conn.CloseWrite()
	b, err := io.ReadAll(conn)
	if err != nil || string(b) != "HELLO STREAM\n{NOT JSONbye" {
		t.Fatalf("stream: %q, %v", b, err)
	}

	var rerr *Error
	if _, err := c.Stream(ctx, "upper", "refuse", nil); !errors.As(err, &rerr) || !strings.Contains(rerr.Message, "mapped: refused") {
		t.Fatalf("a refused stream: %v", err)
	}
	// A stream method after another request on the same connection is
	// refused: the connection is no longer only its own.
	raw, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_, _ = io.WriteString(raw, `{"jsonrpc":"2.0","method":"echo","params":{"text":"x"},"id":1}`+"\n")
	br := bufio.NewReader(raw)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, `"x"`) {
		t.Fatalf("echo: %q %v", line, err)
	}
	_, _ = io.WriteString(raw, `{"jsonrpc":"2.0","method":"upper","id":2}`+"\n")
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "must be the first request") {
		t.Fatalf("a stream method second on a connection: %q %v", line, err)
	}
}
