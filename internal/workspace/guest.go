package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
)

// Guest runs commands in the VM. The CLI implements it over the VM's
// pinned SSH connection; tests run the same scripts with a local shell.
type Guest interface {
	// Exec runs argv (quoted for the remote shell by the implementation)
	// and returns its exit code once the command ends, even if stdin has
	// not ended (as an SSH session does).
	Exec(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error)
}

// LockPath is the guest file that serialises workspace operations on one VM.
const LockPath = "/run/banger/workspace.lock"

// GuestError is a failure in the guest that the host explains.
type GuestError struct {
	Code int
	Msg  string
}

func (e *GuestError) Error() string { return e.Msg }

// ErrGuestChanged means the guest changed a workspace that a prepare would
// replace.
var ErrGuestChanged = errors.New("the guest changed the workspace")

// runScript runs a workspace script in the guest.
func runScript(ctx context.Context, g Guest, script string, args []string, stdin io.Reader, stdout io.Writer) error {
	return RunScript(ctx, g, "banger-workspace", script, args, stdin, stdout)
}

// RunScript runs a script in the guest (sh -c SCRIPT NAME ARGS...). When it
// fails, the guest's stderr, bounded and sanitized for the user's
// terminal, becomes a *GuestError.
func RunScript(ctx context.Context, g Guest, name, script string, args []string, stdin io.Reader, stdout io.Writer) error {
	var stderr bytes.Buffer
	argv := append([]string{"sh", "-c", script, name}, args...)
	code, err := g.Exec(ctx, argv, stdin, stdout, &limited{w: &stderr, n: 8 << 10})
	if err != nil {
		return fmt.Errorf("running in the guest: %w", err)
	}
	if code != 0 {
		return &GuestError{Code: code, Msg: fmt.Sprintf("the guest command failed (exit %d): %s", code, Sanitize(stderr.String()))}
	}
	return nil
}

// Sanitize makes guest output safe to print on the user's terminal: no
// control characters (escape sequences), trimmed and bounded.
func Sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return r
		}
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return '?'
		}
		return r
	}, strings.TrimSpace(s))
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}

// limited keeps the first n bytes written and drops the rest.
type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		_, _ = l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
