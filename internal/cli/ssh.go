package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/client"
	"github.com/banger-dev/banger/internal/guestssh"
)

// dialVM opens SSH to VM name with the key and pinned host key the daemon
// hands out: over TCP to its address, or through the daemon and the
// agent's tunnel when it has no network.
func dialVM(ctx context.Context, c *client.Client, name string, info api.SSHInfo) (*ssh.Client, error) {
	signer, err := ssh.ParsePrivateKey([]byte(info.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("parsing the daemon's ssh key: %w", err)
	}
	if !info.Tunnel {
		return guestssh.Dial(ctx, info.Address, signer, info.HostKey)
	}
	conn, err := c.VMTunnel(ctx, name, 22)
	if err != nil {
		return nil, err
	}
	return guestssh.Handshake(ctx, conn, "vm "+name, signer, info.HostKey)
}

// shellQuote joins argv into one command line for the remote shell.
func shellQuote(argv []string) string { return guestssh.Quote(argv) }

// execFlags are the options of a guest command that `vm ssh` and `vm run`
// share.
type execFlags struct {
	tty         bool
	interactive bool
	env         []string
	workdir     string
	user        string
}

func (e *execFlags) add(f *pflag.FlagSet) {
	f.BoolVarP(&e.tty, "tty", "t", false, "give the command a terminal (size, TERM, resize, Ctrl-C as on a local terminal)")
	f.BoolVarP(&e.interactive, "interactive", "i", false, "keep stdin open (it always is; accepted for docker users)")
	f.StringArrayVarP(&e.env, "env", "e", nil, "set KEY=VALUE in the command's environment (repeatable)")
	f.StringVarP(&e.workdir, "workdir", "w", "", "run the command in this guest directory")
	f.StringVarP(&e.user, "user", "u", "", "run the command as this guest user (name or uid)")
}

func (e *execFlags) check(cmd *cobra.Command) error {
	for _, kv := range e.env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return usagef(cmd, "--env %q is not KEY=VALUE", kv)
		}
	}
	return nil
}

// runRemote runs argv in the VM and returns its exit code, streaming the
// caller's stdin/stdout/stderr. SIGINT, SIGTERM and SIGHUP reach the
// command (its whole process group); with --tty it gets a terminal.
func (a *app) runRemote(ctx context.Context, c *ssh.Client, argv []string, e execFlags) (int, error) {
	sess, err := c.NewSession()
	if err != nil {
		return -1, fmt.Errorf("opening ssh session: %w", err)
	}
	defer sess.Close()
	x := guestssh.Exec{Argv: argv, Env: e.env, Dir: e.workdir, User: e.user, TTY: e.tty}
	if e.tty {
		restore, err := a.startTerminal(sess)
		if err != nil {
			return -1, err
		}
		defer restore()
	} else {
		sess.Stdin = a.streams.In
		sess.Stdout, sess.Stderr = a.streams.Out, a.streams.Err
	}
	// A VM that dies under the command ends it within seconds.
	gone := guestssh.KeepAlive(c, 2*time.Second, 3)
	code, err := guestssh.RunForwarding(ctx, c, sess, x)
	if gone() {
		return -1, guestssh.ErrGuestGone
	}
	return code, err
}

// startTerminal requests a PTY the size of the local terminal, puts the
// local terminal in raw mode and forwards window-size changes. It returns
// the function that restores the terminal.
func (a *app) startTerminal(sess *ssh.Session) (func(), error) {
	in, ok := a.streams.In.(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		return nil, fmt.Errorf("--tty needs a terminal on stdin; drop -t to pipe input")
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
		return nil, fmt.Errorf("requesting a terminal: %w", err)
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		return nil, fmt.Errorf("setting terminal raw mode: %w", err)
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	go func() {
		for range winch {
			if w, h, err := term.GetSize(fd); err == nil {
				_ = sess.WindowChange(h, w)
			}
		}
	}()
	sess.Stdin, sess.Stdout, sess.Stderr = in, a.streams.Out, a.streams.Err
	return func() {
		signal.Stop(winch)
		close(winch)
		_ = term.Restore(fd, old)
	}, nil
}

// interactiveShell runs a login shell on a terminal.
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
	restore, err := a.startTerminal(sess)
	if err != nil {
		return -1, err
	}
	defer restore()
	if err := sess.Shell(); err != nil {
		return -1, fmt.Errorf("starting shell: %w", err)
	}
	return guestssh.ExitCode(sess.Wait())
}

// exitCodeError makes banger exit with a remote command's exit code,
// printing nothing more.
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }
