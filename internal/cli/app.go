package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/banger-dev/banger/internal/client"
	"github.com/banger-dev/banger/internal/paths"
)

// app carries the global flags and streams to every command.
type app struct {
	streams    Streams
	version    string
	socket     string
	stateDir   string
	configPath string
}

func (a *app) socketPath() string {
	if a.socket != "" {
		return a.socket
	}
	own := paths.DefaultSocket()
	// A user without a daemon of their own talks to the system daemon when
	// one runs: that is how members of the banger group use banger.
	if os.Getenv("BANGER_SOCKET") == "" && os.Geteuid() != 0 && !exists(own) && exists(paths.SystemSocket) {
		return paths.SystemSocket
	}
	return own
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// client returns a client for the daemon, starting the daemon first when
// nothing answers on the socket.
func (a *app) client(ctx context.Context) (*client.Client, error) {
	c := client.New(a.socketPath())
	st, err := c.Status(ctx)
	if err == nil && a.stateDir != "" {
		// A --state-dir names which daemon is meant: one serving another
		// state directory on this socket is not it.
		if want, aerr := filepath.Abs(a.stateDir); aerr == nil && filepath.Clean(st.StateDir) != want {
			return nil, fmt.Errorf("the daemon on %s uses state directory %s, not %s; stop it first (banger daemon stop) or give another --socket", c.Socket, st.StateDir, want)
		}
	}
	if err == nil || !errors.Is(err, client.ErrNotRunning) {
		var rerr *client.Error
		if errors.As(err, &rerr) {
			// The daemon answered; the command's own call will say more.
			return c, nil
		}
		return c, err
	}
	if err := a.startDaemon(ctx, c); err != nil {
		return nil, err
	}
	return c, nil
}

func (a *app) startDaemon(ctx context.Context, c *client.Client) error {
	stateDir, err := a.stateDirPath()
	if err != nil {
		return err
	}
	fmt.Fprintf(a.streams.Err, "banger: bangerd is not running; starting it (socket %s, state %s)\n", c.Socket, stateDir)
	if err := c.StartDaemon(ctx, client.DaemonOptions{StateDir: stateDir, ConfigPath: a.configPath}); err != nil {
		return fmt.Errorf("starting bangerd: %w", err)
	}
	return nil
}

func (a *app) stateDirPath() (string, error) {
	if a.stateDir != "" {
		return a.stateDir, nil
	}
	return paths.DefaultStateDir()
}
