// Package run is the one place banger runs other programs. Commands are
// argv lists, never shell strings, and every failure names the argv and
// carries the tail of what the command printed.
package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Option adjusts a command before it runs.
type Option func(*exec.Cmd)

// Dir runs the command in dir.
func Dir(dir string) Option { return func(c *exec.Cmd) { c.Dir = dir } }

// Env adds KEY=VALUE pairs to the inherited environment.
func Env(kv ...string) Option {
	return func(c *exec.Cmd) { c.Env = append(os.Environ(), kv...) }
}

// Stdin feeds r to the command.
func Stdin(r io.Reader) Option { return func(c *exec.Cmd) { c.Stdin = r } }

// Stdout sends the command's standard output to w instead of capturing it.
func Stdout(w io.Writer) Option { return func(c *exec.Cmd) { c.Stdout = w } }

// Error is a command that failed.
type Error struct {
	Argv   []string
	Err    error
	Output string // tail of stderr (or combined output)
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %v", strings.Join(e.Argv, " "), e.Err)
	if e.Output != "" {
		msg += ": " + e.Output
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// ExitCode is the command's exit status, or -1 if it did not exit normally.
func (e *Error) ExitCode() int {
	var ee *exec.ExitError
	if errors.As(e.Err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

const tailBytes = 2048

// Output runs argv and returns its standard output. On failure the error
// carries argv and the tail of standard error.
func Output(ctx context.Context, argv []string, opts ...Option) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("running a command: empty argv")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	for _, o := range opts {
		o(cmd)
	}
	if err := cmd.Run(); err != nil {
		out := stderr.Bytes()
		if len(out) == 0 && cmd.Stdout == &stdout {
			out = stdout.Bytes()
		}
		return stdout.Bytes(), &Error{Argv: argv, Err: err, Output: tail(out)}
	}
	return stdout.Bytes(), nil
}

// Run runs argv and discards its output unless it fails.
func Run(ctx context.Context, argv []string, opts ...Option) error {
	_, err := Output(ctx, argv, opts...)
	return err
}

// Spawn starts a long-lived process (a VMM) in its own session so that it
// outlives the daemon, with the given files as stdin, stdout and stderr
// (nil means /dev/null). The caller tracks it by PID.
func Spawn(argv []string, stdin, stdout, stderr *os.File) (*os.Process, error) {
	return SpawnIn("", argv, stdin, stdout, stderr)
}

// SpawnIn is Spawn with dir as the process's working directory ("" is the
// caller's).
func SpawnIn(dir string, argv []string, stdin, stdout, stderr *os.File) (*os.Process, error) {
	if len(argv) == 0 {
		return nil, errors.New("spawning a process: empty argv")
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", os.DevNull, err)
	}
	defer null.Close()
	pick := func(f *os.File) *os.File {
		if f == nil {
			return null
		}
		return f
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, &Error{Argv: argv, Err: err}
	}
	// A relative program path would be looked up from dir in the child.
	if path, err = filepath.Abs(path); err != nil {
		return nil, &Error{Argv: argv, Err: err}
	}
	p, err := os.StartProcess(path, argv, &os.ProcAttr{
		Dir:   dir,
		Files: []*os.File{pick(stdin), pick(stdout), pick(stderr)},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return nil, &Error{Argv: argv, Err: err}
	}
	return p, nil
}

// LookPath finds a program on PATH.
func LookPath(name string) (string, error) { return exec.LookPath(name) }

func tail(b []byte) string {
	s := strings.TrimSpace(string(bytes.ToValidUTF8(b, []byte("?"))))
	if len(s) > tailBytes {
		s = "…" + s[len(s)-tailBytes:]
	}
	return s
}
