package rpc

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestChunks(t *testing.T) {
	var buf bytes.Buffer
	w := NewChunkWriter(&buf)
	big := strings.Repeat("x", chunkMax+10)
	if _, err := w.Write([]byte(big)); err != nil {
		t.Fatal(err)
	}
	if err := w.End(nil); err != nil {
		t.Fatal(err)
	}
	whole := buf.Bytes()
	var out bytes.Buffer
	if err := ReadChunks(bytes.NewReader(whole), &out); err != nil || out.String() != big {
		t.Fatalf("complete answer: %v, %d bytes", err, out.Len())
	}
	// Broken off before the end mark: not a complete answer.
	if err := ReadChunks(bytes.NewReader(whole[:len(whole)-4]), &bytes.Buffer{}); !errors.Is(err, ErrBrokenOff) {
		t.Fatalf("broken-off answer: %v", err)
	}
	buf.Reset()
	w = NewChunkWriter(&buf)
	_, _ = w.Write([]byte("part"))
	_ = w.End(errors.New("image gone"))
	var re *RemoteError
	if err := ReadChunks(&buf, &bytes.Buffer{}); !errors.As(err, &re) || re.Msg != "image gone" {
		t.Fatalf("failed answer: %v", err)
	}
}
