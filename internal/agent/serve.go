package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/banger-dev/banger/internal/guest"
)

// heartbeatEvery is how often the agent tells the host it is alive.
const heartbeatEvery = 5 * time.Second

// server speaks the control protocol (newline-delimited JSON
// guest.Message) over one stream.
type server struct {
	log       *logger
	version   string
	heartbeat time.Duration
	// awaitReady blocks until the guest's own init runs (nil: it does).
	awaitReady func(context.Context)
	// shutdown powers the guest off cleanly; called after the ack is sent.
	shutdown func()
	// adjustClock applies a MsgClockAdjust (nil: the clock is left alone).
	adjustClock func(time.Duration) (string, error)
	// identify applies a MsgIdentity (nil: refused).
	identify func(guest.Identity) error
	// eofRetry says an EOF means "no host on the other end yet" (a
	// virtio-serial port reads EOF while the host side is closed), not the
	// end of the stream: keep reading.
	eofRetry time.Duration
}

// run sends guest.MsgReady, then guest.MsgHeartbeat every heartbeat, and
// answers the host's messages until the stream ends or ctx is done.
func (s *server) run(ctx context.Context, rw io.ReadWriter) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c, ok := rw.(io.Closer); ok {
		stop := context.AfterFunc(ctx, func() { c.Close() })
		defer stop()
	}

	var mu sync.Mutex
	enc := json.NewEncoder(rw)
	send := func(m guest.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if m.Type == guest.MsgClock {
			// Read the clock as late as possible: a heartbeat may have
			// held the lock, blocked until the host reconnected.
			m.Time = time.Now().UnixNano()
		}
		return enc.Encode(m) // one line: Encode ends with "\n"
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel() // a stream that cannot be written to is done
		if s.awaitReady != nil {
			s.awaitReady(ctx)
		}
		if ctx.Err() != nil || send(guest.Message{Type: guest.MsgReady, Detail: s.version}) != nil {
			return
		}
		t := time.NewTicker(s.heartbeat)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := send(guest.Message{Type: guest.MsgHeartbeat}); err != nil {
					s.log.Printf("control channel: %v", err)
					return
				}
			}
		}
	}()
	defer wg.Wait()

	r := bufio.NewReader(rw)
	var partial []byte
	for {
		line, err := r.ReadBytes('\n')
		partial = append(partial, line...)
		if errors.Is(err, io.EOF) && s.eofRetry > 0 && ctx.Err() == nil {
			time.Sleep(s.eofRetry)
			continue
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		s.handle(partial, send)
		partial = partial[:0]
	}
}

// handle answers one line from the host.
func (s *server) handle(line []byte, send func(guest.Message) error) {
	var m guest.Message
	if err := json.Unmarshal(line, &m); err != nil {
		s.log.Printf("control channel: ignoring a line that is not a message: %v", err)
		return
	}
	switch m.Type {
	case guest.MsgPing:
		_ = send(guest.Message{Type: guest.MsgPong, Detail: s.version})
	case guest.MsgClockQuery:
		_ = send(guest.Message{Type: guest.MsgClock, ID: m.ID})
	case guest.MsgClockAdjust:
		reply := guest.Message{Type: guest.MsgClockDone, ID: m.ID}
		if s.adjustClock == nil {
			reply.Detail = "clock left alone"
		} else if how, err := s.adjustClock(time.Duration(m.Offset)); err != nil {
			s.log.Printf("control channel: %v", err)
			reply.Detail = err.Error()
		} else {
			reply.Detail = how
		}
		_ = send(reply)
	case guest.MsgIdentity:
		reply := guest.Message{Type: guest.MsgIdentityDone, ID: m.ID}
		switch {
		case m.Identity == nil:
			reply.Detail = "identity message without an identity"
		case s.identify == nil:
			reply.Detail = "this boot takes no identity"
		default:
			if err := s.identify(*m.Identity); err != nil {
				s.log.Printf("control channel: %v", err)
				reply.Detail = err.Error()
			}
		}
		_ = send(reply)
	case guest.MsgShutdown:
		s.log.Printf("control channel: shutdown requested")
		_ = send(guest.Message{Type: guest.MsgAck})
		if s.shutdown != nil {
			s.shutdown()
		}
	default:
		s.log.Printf("control channel: ignoring message type %q", m.Type)
	}
}
