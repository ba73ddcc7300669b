// Package guestssh is banger's SSH client side: the daemon's own key pair,
// per-VM host keys that banger generates and therefore pins, and running
// commands or shells in a guest. Nobody is ever asked to trust a host key.
package guestssh

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/atomicfile"
)

// User is the guest account banger logs in as.
const User = "root"

// LoadOrCreateKey reads the ed25519 private key at path, creating it (0600)
// when it does not exist.
func LoadOrCreateKey(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		priv, _, err := NewKeyPair("banger")
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("creating key directory: %w", err)
		}
		if err := atomicfile.WriteFile(path, []byte(priv), 0o600); err != nil {
			return nil, fmt.Errorf("writing ssh key: %w", err)
		}
		b = []byte(priv)
	} else if err != nil {
		return nil, fmt.Errorf("reading ssh key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("parsing ssh key %s: %w", path, err)
	}
	return s, nil
}

// NewKeyPair makes an ed25519 key pair: the private key in OpenSSH PEM
// format and the public key in authorized_keys format.
func NewKeyPair(comment string) (privPEM, pubAuthorized string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generating ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return "", "", fmt.Errorf("encoding private key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", "", fmt.Errorf("encoding public key: %w", err)
	}
	return string(pem.EncodeToMemory(block)), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))), nil
}

// AuthorizedKey renders a signer's public key for authorized_keys.
func AuthorizedKey(s ssh.Signer) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey())))
}

// Dial connects to addr (host:port) as root, accepting only hostPub.
func Dial(ctx context.Context, addr string, signer ssh.Signer, hostPub string) (*ssh.Client, error) {
	conn, err := TCP(addr)(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	return Handshake(ctx, conn, addr, signer, hostPub)
}

// Dialer opens a connection to a guest's SSH server: over TCP, or
// through the agent's tunnel for a VM without a network.
type Dialer func(ctx context.Context) (net.Conn, error)

// TCP dials addr.
func TCP(addr string) Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// Handshake logs in as root over conn (named name in errors), accepting
// only hostPub. It owns conn: on error conn is closed.
func Handshake(ctx context.Context, conn net.Conn, name string, signer ssh.Signer, hostPub string) (*ssh.Client, error) {
	hk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hostPub))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("parsing pinned host key: %w", err)
	}
	cfg := &ssh.ClientConfig{
		User:            User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hk),
		Timeout:         10 * time.Second,
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, name, cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ssh handshake with %s: %w", name, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// Run runs cmd in a session and returns its exit code. A command killed
// by a signal reports 128+signal, as a shell would.
func Run(ctx context.Context, c *ssh.Client, cmd string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	sess, err := c.NewSession()
	if err != nil {
		return -1, fmt.Errorf("opening ssh session: %w", err)
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, stdout, stderr
	stop := context.AfterFunc(ctx, func() { _ = sess.Signal(ssh.SIGTERM); _ = sess.Close() })
	defer stop()
	err = sess.Run(cmd)
	return ExitCode(err)
}

// ExitCode turns a session's error into the remote exit code.
func ExitCode(err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		if ee.Signal() != "" && ee.ExitStatus() == 0 {
			return 128 + signalNumber(ee.Signal()), nil
		}
		return ee.ExitStatus(), nil
	}
	var missing *ssh.ExitMissingError
	if errors.As(err, &missing) {
		return 255, errors.New("the remote command ended without an exit status (connection lost)")
	}
	return -1, fmt.Errorf("running remote command: %w", err)
}

func signalNumber(s string) int {
	switch s {
	case "HUP":
		return 1
	case "INT":
		return 2
	case "QUIT":
		return 3
	case "KILL":
		return 9
	case "TERM":
		return 15
	}
	return 0
}

// WaitReady polls until an SSH command succeeds on addr or ctx ends.
func WaitReady(ctx context.Context, addr string, signer ssh.Signer, hostPub string) error {
	var last error
	for {
		attempt, cancel := context.WithTimeout(ctx, 15*time.Second)
		c, err := Dial(attempt, addr, signer, hostPub)
		if err == nil {
			code, rerr := Run(attempt, c, "true", nil, io.Discard, io.Discard)
			c.Close()
			cancel()
			if rerr == nil && code == 0 {
				return nil
			}
			err = fmt.Errorf("test command exited %d", code)
			if rerr != nil {
				err = fmt.Errorf("test command: %w", rerr)
			}
		} else {
			cancel()
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for ssh on %s: %w (last error: %w)", addr, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitBanner polls until an SSH server reached through dial (named name
// in errors) greets with its version line. It is the readiness check of a
// boot: much cheaper than a handshake under emulation (where one costs
// about a second), and the client's own connection verifies the pinned
// host key anyway.
func WaitBanner(ctx context.Context, name string, dial Dialer) error {
	var last error
	for {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := dial(dctx)
		cancel()
		if err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, rerr := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if rerr == nil && strings.HasPrefix(line, "SSH-") {
				return nil
			}
			err = fmt.Errorf("no ssh greeting (read %q): %w", line, rerr)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for ssh on %s: %w (last error: %w)", name, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
