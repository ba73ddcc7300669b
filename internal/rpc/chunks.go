package rpc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A stream method that sends the client a long answer (an image bundle)
// frames it in chunks, so that the client can tell a complete answer from
// one the server broke off: each chunk is a 4-byte big-endian length and
// that many bytes; a zero length ends the answer; chunkFailed, then a
// length and a message, ends it with an error.
const (
	chunkMax    = 1 << 20
	chunkFailed = 0xffffffff
)

// ChunkWriter frames what is written to a stream. Call End once.
type ChunkWriter struct{ w io.Writer }

// NewChunkWriter frames writes to w.
func NewChunkWriter(w io.Writer) *ChunkWriter { return &ChunkWriter{w: w} }

func (c *ChunkWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), chunkMax)
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(k))
		if _, err := c.w.Write(hdr[:]); err != nil {
			return n, err
		}
		if _, err := c.w.Write(p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// End ends the answer: complete when err is nil, failed with err's message
// otherwise.
func (c *ChunkWriter) End(err error) error {
	var hdr [8]byte
	if err == nil {
		_, werr := c.w.Write(hdr[:4])
		return werr
	}
	msg := err.Error()
	binary.BigEndian.PutUint32(hdr[:4], chunkFailed)
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(msg)))
	if _, werr := c.w.Write(hdr[:]); werr != nil {
		return werr
	}
	_, werr := io.WriteString(c.w, msg)
	return werr
}

// ErrBrokenOff means a framed answer ended before its end mark.
var ErrBrokenOff = errors.New("the daemon's answer ended early")

// RemoteError is the error a framed answer ended with.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return e.Msg }

// ReadChunks copies a framed answer from r to w. It returns nil only for
// a complete answer.
func ReadChunks(r io.Reader, w io.Writer) error {
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return fmt.Errorf("%w: %w", ErrBrokenOff, err)
		}
		n := binary.BigEndian.Uint32(hdr[:])
		switch {
		case n == 0:
			return nil
		case n == chunkFailed:
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				return fmt.Errorf("%w: %w", ErrBrokenOff, err)
			}
			msg, err := io.ReadAll(io.LimitReader(r, int64(min(binary.BigEndian.Uint32(hdr[:]), 64<<10))))
			if err != nil {
				return fmt.Errorf("%w: %w", ErrBrokenOff, err)
			}
			return &RemoteError{Msg: string(msg)}
		case n > chunkMax:
			return fmt.Errorf("%w: a chunk of %d bytes", ErrBrokenOff, n)
		}
		if _, err := io.CopyN(w, r, int64(n)); err != nil {
			return fmt.Errorf("%w: %w", ErrBrokenOff, err)
		}
	}
}
