package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/guestssh"
)

// dialVM opens SSH to a VM with the key and pinned host key the daemon
// hands out.
func dialVM(ctx context.Context, info api.SSHInfo) (*ssh.Client, error) {
	signer, err := ssh.ParsePrivateKey([]byte(info.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("parsing the daemon's ssh key: %w", err)
	}
	return guestssh.Dial(ctx, info.Address, signer, info.HostKey)
}

// shellQuote joins argv into one command line for the remote shell,
// quoting each word so it arrives exactly as given.
func shellQuote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// runRemote runs argv in the VM and returns its exit code, streaming the
// caller's stdin/stdout/stderr.
func (a *app) runRemote(ctx context.Context, c *ssh.Client, argv []string) (int, error) {
	var stdin io.Reader
	if a.streams.In != nil {
		if f, ok := a.streams.In.(*os.File); !ok || !term.IsTerminal(int(f.Fd())) {
			stdin = a.streams.In
		}
	}
	return guestssh.Run(ctx, c, shellQuote(argv), stdin, a.streams.Out, a.streams.Err)
}

// interactiveShell runs a login shell on a terminal, with the local
// terminal in raw mode and window-size changes forwarded.
func (a *app) interactiveShell(c *ssh.Client) (int, error) {
	sess, err := c.NewSession()
	if err != nil {
		return -1, fmt.Errorf("opening ssh session: %w", err)
	}
	defer sess.Close()
	in, ok := a.streams.In.(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		return -1, fmt.Errorf("an interactive shell needs a terminal; to run a command use `banger vm ssh NAME -- CMD`")
	}
	fd := int(in.Fd())
	w, h, err := term.GetSize(fd)
	if err != nil {
		w, h = 80, 24
	}
	termName := os.Getenv("TERM")
	if termName == "" {
		termName = "xterm-256color"
	}
	if err := sess.RequestPty(termName, h, w, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
		return -1, fmt.Errorf("requesting a terminal: %w", err)
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		return -1, fmt.Errorf("setting terminal raw mode: %w", err)
	}
	defer func() { _ = term.Restore(fd, old) }()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	go func() {
		for range winch {
			if w, h, err := term.GetSize(fd); err == nil {
				_ = sess.WindowChange(h, w)
			}
		}
	}()
	sess.Stdin, sess.Stdout, sess.Stderr = in, a.streams.Out, a.streams.Err
	if err := sess.Shell(); err != nil {
		return -1, fmt.Errorf("starting shell: %w", err)
	}
	return guestssh.ExitCode(sess.Wait())
}

// exitCodeError makes banger exit with a remote command's exit code,
// printing nothing more.
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }
