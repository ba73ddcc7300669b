package guestssh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/guest"
)

// Quote joins argv into one command line for the remote shell, quoting
// each word so that it arrives exactly as given: the words after `--` are
// the command's argv, never re-split or expanded by a shell.
func Quote(argv []string) string {
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

// Exec is how a command runs in a guest.
type Exec struct {
	Argv []string
	Env  []string // KEY=VALUE
	Dir  string
	User string
	// TTY gives the command a terminal; the terminal then delivers signals.
	TTY bool
	// Token names the command so that RunForwarding can signal it.
	Token string
}

// NewToken makes a command token.
func NewToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// CommandLine is the remote command line for e. Without a TTY it runs the
// command through the agent's exec helper (own process group, signals to
// the whole group, ended when the client goes away), falling back to a
// plain exec in guests that lack the helper.
func (e Exec) CommandLine() string {
	var opts []string
	for _, kv := range e.Env {
		opts = append(opts, "--env", kv)
	}
	if e.Dir != "" {
		opts = append(opts, "--workdir", e.Dir)
	}
	if e.User != "" {
		opts = append(opts, "--user", e.User)
	}
	if e.Token != "" {
		opts = append(opts, "--token", e.Token)
	}
	plain := e.Argv
	if e.User != "" {
		plain = append([]string{"runuser", "-u", e.User, "--"}, plain...)
	}
	if len(e.Env) > 0 {
		plain = append(append([]string{"env"}, e.Env...), plain...)
	}
	fallback := "exec " + Quote(plain)
	if e.Dir != "" {
		fallback = "cd " + Quote([]string{e.Dir}) + " && " + fallback
	}
	if e.TTY {
		return fallback
	}
	h := Quote([]string{guest.ExecPath})
	return "if [ -x " + h + " ]; then exec " + h + " exec " + Quote(append(append(opts, "--"), e.Argv...)) + "; fi; " + fallback
}

// RunForwarding runs e in sess, forwarding SIGINT, SIGTERM and SIGHUP that
// this process receives to the remote command, and returns the remote exit
// status (128+signal for a command a signal ended, as a shell reports it).
// A signal goes both as an SSH signal request and, because sshd before
// OpenSSH 9.5 refuses those, through `banger-agent kill` in a second
// session over c. ctx ending sends SIGTERM and closes the session.
func RunForwarding(ctx context.Context, c *ssh.Client, sess *ssh.Session, e Exec) (int, error) {
	if !e.TTY && e.Token == "" {
		e.Token = NewToken()
	}
	cmd := e.CommandLine()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := sess.Start(cmd); err != nil {
		return -1, fmt.Errorf("starting remote command: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	for {
		select {
		case err := <-done:
			return ExitCode(err)
		case s := <-sigs:
			sig := sshSignal(s)
			_ = sess.Signal(sig)
			if e.Token != "" {
				go func() {
					if k, err := c.NewSession(); err == nil {
						_ = k.Run(Quote([]string{guest.ExecPath, "kill", e.Token, string(sig)}))
						k.Close()
					}
				}()
			}
		case <-ctx.Done():
			_ = sess.Signal(ssh.SIGTERM)
			_ = sess.Close()
			if err := <-done; err != nil {
				return -1, fmt.Errorf("remote command ended by %w: %w", ctx.Err(), err)
			}
			return -1, ctx.Err()
		}
	}
}

func sshSignal(s os.Signal) ssh.Signal {
	switch s {
	case syscall.SIGINT:
		return ssh.SIGINT
	case syscall.SIGHUP:
		return ssh.SIGHUP
	}
	return ssh.SIGTERM
}

// ErrGuestGone means the guest stopped answering keepalives.
var ErrGuestGone = errors.New("the vm stopped answering (it was stopped, deleted or crashed)")

// KeepAlive probes c every interval and closes it when misses probes in a
// row go unanswered, so a session on a VM that died ends within seconds
// instead of waiting for TCP to give up. It returns a function that stops
// probing and reports whether the guest was declared gone.
func KeepAlive(c *ssh.Client, interval time.Duration, misses int) func() bool {
	stop := make(chan struct{})
	var gone atomic.Bool
	go func() {
		missed := 0
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			reply := make(chan error, 1)
			go func() {
				_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
				reply <- err
			}()
			select {
			case err := <-reply:
				if err == nil {
					missed = 0
					continue
				}
			case <-time.After(interval):
			case <-stop:
				return
			}
			if missed++; missed >= misses {
				gone.Store(true)
				c.Close()
				return
			}
		}
	}()
	var once sync.Once
	return func() bool {
		once.Do(func() { close(stop) })
		return gone.Load()
	}
}
