// Package rpc is JSON-RPC 2.0 over a Unix stream socket: a server with a
// method table whose entries carry their own access rule, checked against the
// caller's kernel-reported credentials (SO_PEERCRED), and a minimal client.
// Framing is one JSON message per line (requests and responses contain no
// raw newlines, as encoding/json writes them), so a malformed message costs
// only its own line. It knows nothing about VMs.
package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/banger-dev/banger/internal/api"
)

// Access is who may call a method.
type Access int

const (
	// AccessMember methods need a privileged caller: root, the daemon's own
	// user, or a member of the configured group.
	AccessMember Access = iota
	// AccessAny methods may be called by anyone who can reach the socket.
	AccessAny
)

// Handler serves one method. params is the raw "params" member (nil when
// absent).
type Handler func(ctx context.Context, c Caller, params json.RawMessage) (any, error)

// StreamHandler serves a method that turns its connection into a byte
// stream. It returns the result to answer with and serve, which runs
// after the answer is written and owns the connection until it returns.
type StreamHandler func(ctx context.Context, c Caller, params json.RawMessage) (result any, serve func(conn Stream), err error)

// Stream is a connection handed to a stream method: what the client sends
// after its request, and a half-close to pass on its end.
type Stream interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// Method is one entry of the method table: Handler, or Stream for a
// method whose connection becomes a byte stream (it must then be the
// connection's first and only request).
type Method struct {
	Access  Access
	Handler Handler
	Stream  StreamHandler
}

// Error is a JSON-RPC error object. Handlers may return one directly; other
// errors go through the server's error mapper.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// Server dispatches requests to a method table.
type Server struct {
	methods   map[string]Method
	authorize func(Caller, Access) error
	mapErr    func(error) *Error
	log       *slog.Logger

	wg    sync.WaitGroup
	conns chan struct{} // one token per open connection
}

// Limits that keep one socket caller from starving the rest.
const (
	// MaxConns is how many connections are served at once; more are
	// answered with an error and closed.
	MaxConns = 256
	// MaxInflight is how many requests of one connection run at once; the
	// connection's next line is read only when one finishes.
	MaxInflight = 32
	// MaxBatch is the most requests one batch may hold.
	MaxBatch = 64
)

// LineTimeout is how long a request line may take to arrive once its first
// byte has (a variable so tests can shorten it).
var LineTimeout = 30 * time.Second

// NewServer makes a server. authorize decides whether a caller may use a
// method of the given access; mapErr turns handler errors into JSON-RPC
// errors (nil means every error is an internal error).
func NewServer(methods map[string]Method, authorize func(Caller, Access) error, mapErr func(error) *Error, log *slog.Logger) *Server {
	if mapErr == nil {
		mapErr = func(err error) *Error { return &Error{Code: api.CodeInternal, Message: err.Error()} }
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{methods: methods, authorize: authorize, mapErr: mapErr, log: log, conns: make(chan struct{}, MaxConns)}
}

// Serve accepts connections until ctx ends or ln fails. It returns after
// every connection it accepted has been closed and its requests answered.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		_ = ln.Close()
	}()
	defer s.wg.Wait()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like pass: back off and
			// keep serving rather than exit and take the socket away.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accepting rpc connection; backing off", "err", err, "backoff", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		uc, ok := conn.(*net.UnixConn)
		if !ok {
			_ = conn.Close()
			continue
		}
		select {
		case s.conns <- struct{}{}:
		default:
			b, _ := json.Marshal(response{JSONRPC: "2.0", ID: nullID, Error: &Error{Code: api.CodeUnavailable, Message: fmt.Sprintf("the daemon is serving %d connections, its limit; try again", MaxConns)}})
			_ = uc.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = uc.Write(append(b, '\n'))
			_ = uc.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.conns }()
			s.serveConn(ctx, uc)
		}()
	}
}

// request is one JSON-RPC request as received.
type request struct {
	JSONRPC string          `json:"jsonrpc"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
	ID      json.RawMessage `json:"id"`
}

type response struct {
	JSONRPC string          `json:"jsonrpc"`
	Result  any             `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
	ID      json.RawMessage `json:"id"`
}

var nullID = json.RawMessage("null")

// maxMessage bounds one request line.
const maxMessage = 16 << 20

func (s *Server) serveConn(ctx context.Context, conn *net.UnixConn) {
	defer conn.Close()
	caller, err := PeerCaller(conn)
	if err != nil {
		s.log.Warn("reading peer credentials", "err", err)
		return
	}
	gone := make(chan struct{})
	caller.Gone = gone
	// Requests on one connection run concurrently, up to MaxInflight. A
	// caller hanging up does not cancel them (asynchronous work has
	// op.cancel for that); the daemon shutting down unblocks the read loop.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var dmu sync.Mutex
	setDeadline := func(t time.Time) {
		dmu.Lock()
		defer dmu.Unlock()
		if ctx.Err() != nil {
			t = aLongTimeAgo
		}
		_ = conn.SetReadDeadline(t)
	}
	go func() {
		<-ctx.Done()
		setDeadline(aLongTimeAgo)
	}()

	var (
		wmu      sync.Mutex
		inflight sync.WaitGroup
		slots    = make(chan struct{}, MaxInflight)
	)
	write := func(v any) {
		b, err := json.Marshal(v)
		if err != nil {
			b, _ = json.Marshal(response{JSONRPC: "2.0", ID: nullID, Error: &Error{Code: api.CodeInternal, Message: "encoding response: " + err.Error()}})
		}
		wmu.Lock()
		defer wmu.Unlock()
		_ = conn.SetWriteDeadline(time.Now().Add(LineTimeout))
		_, _ = conn.Write(append(b, '\n'))
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	for first := true; ; first = false {
		line, err := readLine(br, setDeadline)
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				write(response{JSONRPC: "2.0", ID: nullID, Error: &Error{Code: api.CodeInvalidRequest, Message: err.Error()}})
			} else if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
				write(response{JSONRPC: "2.0", ID: nullID, Error: &Error{Code: api.CodeParseError, Message: fmt.Sprintf("parse error: a request line took longer than %s to arrive", LineTimeout)}})
			}
			if ctx.Err() == nil {
				close(gone) // the caller hung up (or broke the framing)
			}
			break
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if !json.Valid(line) {
			// Framing is one message per line, so the next line is a fresh start.
			write(response{JSONRPC: "2.0", ID: nullID, Error: &Error{Code: api.CodeParseError, Message: "parse error: the message is not valid JSON"}})
			continue
		}
		raw := json.RawMessage(line)
		// Only a first request may be a stream method; later lines are
		// parsed once, by handleOne, which refuses stream methods there.
		if m, req, ok := s.streamMethod(raw, first); ok {
			serve, resp := s.startStream(ctx, caller, req, m)
			write(resp)
			if serve == nil {
				continue
			}
			// The answer's write deadline must not end the stream.
			setDeadline(time.Time{})
			wmu.Lock()
			_ = conn.SetWriteDeadline(time.Time{})
			wmu.Unlock()
			serve(streamConn{br, conn})
			close(gone)
			return
		}
		slots <- struct{}{}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-slots }()
			if out := s.handleMessage(ctx, caller, raw); out != nil {
				write(out)
			}
		}()
	}
	// Let in-flight requests finish and answer before closing.
	inflight.Wait()
}

// streamConn reads through the request reader, so bytes sent right after
// the request reach the stream.
type streamConn struct {
	*bufio.Reader
	*net.UnixConn
}

func (c streamConn) Read(p []byte) (int, error) { return c.Reader.Read(p) }

// streamMethod reports whether raw, a connection's first line, is one
// request for a stream method (later lines are not even parsed here).
func (s *Server) streamMethod(raw json.RawMessage, first bool) (Method, request, bool) {
	var req request
	if !first || len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &req) != nil {
		return Method{}, req, false
	}
	m, ok := s.methods[req.Method]
	if !ok || m.Stream == nil || req.JSONRPC != "2.0" || !validID(req.ID) || len(req.ID) == 0 {
		return Method{}, req, false
	}
	return m, req, true
}

// startStream authorizes and runs a stream method's handler.
func (s *Server) startStream(ctx context.Context, c Caller, req request, m Method) (func(Stream), response) {
	if s.authorize != nil {
		if err := s.authorize(c, m.Access); err != nil {
			s.log.Warn("permission denied", "method", req.Method, "uid", c.UID, "pid", c.PID)
			return nil, response{JSONRPC: "2.0", ID: req.ID, Error: &Error{Code: api.CodePermissionDenied, Message: err.Error()}}
		}
	}
	var (
		result any
		serve  func(Stream)
	)
	_, err := s.call(ctx, c, req, Method{Handler: func(ctx context.Context, c Caller, params json.RawMessage) (any, error) {
		var err error
		result, serve, err = m.Stream(ctx, c, params)
		return result, err
	}})
	if err != nil {
		var rerr *Error
		if !errors.As(err, &rerr) {
			rerr = s.mapErr(err)
		}
		return nil, response{JSONRPC: "2.0", ID: req.ID, Error: rerr}
	}
	if result == nil {
		result = struct{}{}
	}
	return serve, response{JSONRPC: "2.0", ID: req.ID, Result: result}
}

var errLineTooLong = fmt.Errorf("invalid request: a message is longer than %d bytes", maxMessage)

// readLine reads one request line. It waits for the line's first byte as
// long as the connection stays open, then gives the rest LineTimeout.
func readLine(br *bufio.Reader, setDeadline func(time.Time)) ([]byte, error) {
	setDeadline(time.Time{})
	if _, err := br.Peek(1); err != nil {
		return nil, err
	}
	setDeadline(time.Now().Add(LineTimeout))
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxMessage {
			return nil, errLineTooLong
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) && len(bytes.TrimSpace(line)) > 0 {
				return line, nil
			}
			return nil, err
		}
	}
}

// handleMessage serves a single request or a batch; it returns what to
// send back, or nil when nothing is owed (notifications only).
func (s *Server) handleMessage(ctx context.Context, c Caller, raw json.RawMessage) any {
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var batch []json.RawMessage
		if err := json.Unmarshal(raw, &batch); err != nil || len(batch) == 0 {
			return response{JSONRPC: "2.0", ID: nullID, Error: &Error{Code: api.CodeInvalidRequest, Message: "invalid request: empty or malformed batch"}}
		}
		if len(batch) > MaxBatch {
			return response{JSONRPC: "2.0", ID: nullID, Error: &Error{Code: api.CodeInvalidRequest, Message: fmt.Sprintf("invalid request: a batch may hold at most %d requests, this one has %d", MaxBatch, len(batch))}}
		}
		// A batch's requests run one after another: a batch costs its
		// connection one in-flight slot, like a single request.
		out := make([]response, 0, len(batch))
		for _, item := range batch {
			if r, ok := s.handleOne(ctx, c, item); ok {
				out = append(out, r)
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	if r, ok := s.handleOne(ctx, c, raw); ok {
		return r
	}
	return nil
}

// handleOne serves one request object. ok is false for a notification.
func (s *Server) handleOne(ctx context.Context, c Caller, raw json.RawMessage) (resp response, ok bool) {
	var req request
	if err := json.Unmarshal(raw, &req); err != nil {
		return response{JSONRPC: "2.0", ID: nullID, Error: &Error{Code: api.CodeInvalidRequest, Message: "invalid request: " + err.Error()}}, true
	}
	id := req.ID
	if !validID(id) {
		return response{JSONRPC: "2.0", ID: nullID, Error: &Error{Code: api.CodeInvalidRequest, Message: "invalid request: id must be a string, a number or null"}}, true
	}
	notification := len(id) == 0
	if notification {
		id = nullID
	}
	// An invalid request is answered even without an id (`{}`, `null`):
	// only a well-formed notification goes unanswered.
	if req.JSONRPC != "2.0" {
		return response{JSONRPC: "2.0", ID: id, Error: &Error{Code: api.CodeInvalidRequest, Message: `invalid request: "jsonrpc" must be "2.0"`}}, true
	}
	if req.Method == "" {
		return response{JSONRPC: "2.0", ID: id, Error: &Error{Code: api.CodeInvalidRequest, Message: `invalid request: "method" is missing`}}, true
	}
	fail := func(e *Error) (response, bool) {
		return response{JSONRPC: "2.0", ID: id, Error: e}, !notification
	}
	m, found := s.methods[req.Method]
	if !found {
		return fail(&Error{Code: api.CodeMethodNotFound, Message: fmt.Sprintf("method %q not found", req.Method)})
	}
	if m.Stream != nil {
		return fail(&Error{Code: api.CodeInvalidRequest, Message: fmt.Sprintf("invalid request: %s must be the first request on a connection", req.Method)})
	}
	if s.authorize != nil {
		if err := s.authorize(c, m.Access); err != nil {
			s.log.Warn("permission denied", "method", req.Method, "uid", c.UID, "pid", c.PID)
			return fail(&Error{Code: api.CodePermissionDenied, Message: err.Error()})
		}
	}
	result, err := s.call(ctx, c, req, m)
	if err != nil {
		var rerr *Error
		if !errors.As(err, &rerr) {
			rerr = s.mapErr(err)
		}
		return fail(rerr)
	}
	if result == nil {
		result = struct{}{}
	}
	return response{JSONRPC: "2.0", ID: id, Result: result}, !notification
}

// call runs a handler, turning a panic into an internal error so that one
// bad request never takes the daemon down.
func (s *Server) call(ctx context.Context, c Caller, req request, m Method) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("handler panic", "method", req.Method, "panic", p, "stack", string(debug.Stack()))
			err = &Error{Code: api.CodeInternal, Message: fmt.Sprintf("internal error in %s: %v", req.Method, p)}
		}
	}()
	params := req.Params
	if bytes.Equal(bytes.TrimSpace(params), []byte("null")) {
		params = nil
	}
	return m.Handler(ctx, c, params)
}

func validID(id json.RawMessage) bool {
	if len(id) == 0 {
		return true
	}
	switch id[0] {
	case '"', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

// Typed adapts a function of typed params to a Handler. Params must decode
// into P without unknown fields; otherwise the caller gets an invalid-params
// error naming the problem.
func Typed[P, R any](f func(ctx context.Context, c Caller, p P) (R, error)) Handler {
	return func(ctx context.Context, c Caller, raw json.RawMessage) (any, error) {
		var p P
		if len(raw) > 0 {
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&p); err != nil {
				return nil, &Error{Code: api.CodeInvalidParams, Message: "invalid params: " + err.Error()}
			}
		}
		return f(ctx, c, p)
	}
}
