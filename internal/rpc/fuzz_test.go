package rpc

import (
	"context"
	"encoding/json"
	"testing"
)

// Whatever a caller sends, the server answers with valid JSON-RPC (or,
// for notifications only, nothing) and never panics.
func FuzzHandleMessage(f *testing.F) {
	for _, s := range []string{`{}`, `null`, `[]`, `[{}]`, `{"jsonrpc":"2.0","method":"echo","params":{"text":"a"},"id":1}`,
		`{"jsonrpc":"2.0","method":"echo"}`, `[{"jsonrpc":"2.0","method":"echo","id":"x"},5]`, `{"id":{}}`, `"x"`, `1e999`} {
		f.Add(s)
	}
	srv := NewServer(map[string]Method{
		"echo": {Handler: Typed(func(_ context.Context, _ Caller, p echoParams) (echoParams, error) { return p, nil })},
	}, nil, nil, nil)
	f.Fuzz(func(t *testing.T, msg string) {
		if !json.Valid([]byte(msg)) {
			return // the read loop answers these with a parse error first
		}
		out := srv.handleMessage(context.Background(), Caller{}, json.RawMessage(msg))
		if out == nil {
			return
		}
		b, err := json.Marshal(out)
		if err != nil || !json.Valid(b) {
			t.Fatalf("answer to %q does not encode: %v", msg, err)
		}
	})
}
