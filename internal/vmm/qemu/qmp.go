package qemu

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// qmp is one QMP session: greeting read, capabilities negotiated.
type qmp struct {
	c *net.UnixConn
	r *bufio.Reader
}

// dialQMP opens a session on sock whose commands must all be answered
// within timeout.
func dialQMP(sock string, timeout time.Duration) (*qmp, error) {
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connecting to qmp: %w", err)
	}
	q := &qmp{c: c.(*net.UnixConn), r: bufio.NewReader(c)}
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := q.r.ReadBytes('\n'); err != nil {
		c.Close()
		return nil, fmt.Errorf("reading qmp greeting: %w", err)
	}
	if _, err := q.run("qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmp) Close() error { return q.c.Close() }

// run sends one command with its arguments (nil for none), passing f's
// descriptor along when f is not nil (for getfd), and returns its
// "return" value. Events that arrive meanwhile are skipped.
func (q *qmp) run(cmd string, args any, f *os.File) (json.RawMessage, error) {
	msg := map[string]any{"execute": cmd}
	if args != nil {
		msg["arguments"] = args
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	var oob []byte
	if f != nil {
		oob = syscall.UnixRights(int(f.Fd()))
	}
	if _, _, err := q.c.WriteMsgUnix(append(b, '\n'), oob, nil); err != nil {
		return nil, fmt.Errorf("sending qmp %s: %w", cmd, err)
	}
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("reading qmp reply to %s: %w", cmd, err)
		}
		var reply map[string]json.RawMessage
		if json.Unmarshal(line, &reply) != nil {
			continue
		}
		if ret, ok := reply["return"]; ok {
			return ret, nil
		}
		if e, ok := reply["error"]; ok {
			var qe struct {
				Desc string `json:"desc"`
			}
			_ = json.Unmarshal(e, &qe)
			return nil, &qmpError{cmd: cmd, desc: qe.Desc}
		}
	}
}

type qmpError struct{ cmd, desc string }

func (e *qmpError) Error() string { return "qmp " + e.cmd + ": " + e.desc }

// qmpQuery runs a QMP command without arguments and returns its "return"
// value.
func qmpQuery(sock, command string) (json.RawMessage, error) {
	q, err := dialQMP(sock, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	return q.run(command, nil, nil)
}
