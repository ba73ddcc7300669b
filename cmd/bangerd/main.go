// Command bangerd is banger's daemon: the one privileged process, owner of
// all host state. See internal/daemon.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/banger-dev/banger/internal/daemon"
	"github.com/banger-dev/banger/internal/paths"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	fs := flag.NewFlagSet("bangerd", flag.ContinueOnError)
	socket := fs.String("socket", paths.DefaultSocket(), "Unix socket to serve on (env BANGER_SOCKET)")
	stateDir := fs.String("state-dir", "", "state directory (env BANGER_STATE_DIR; default /var/lib/banger as root, ~/.local/share/banger otherwise)")
	configPath := fs.String("config", "", "config file (default <state-dir>/config.toml, optional)")
	background := fs.Bool("background", false, "log only to the log file (used when banger starts the daemon)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bangerd: unexpected argument %q; bangerd takes only flags (see bangerd -h)\n", fs.Arg(0))
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println("bangerd", version)
		return
	}
	if *stateDir == "" {
		d, err := paths.DefaultStateDir()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bangerd:", err)
			os.Exit(1)
		}
		*stateDir = d
	}
	// Absolute, so that status reports one spelling of it and the daemon
	// does not depend on its working directory.
	if abs, err := filepath.Abs(*stateDir); err == nil {
		*stateDir = abs
	}
	// SIGTERM and SIGINT stop the daemon cleanly; VMs keep running.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := daemon.Run(ctx, daemon.Options{
		Socket: *socket, StateDir: *stateDir, ConfigPath: *configPath,
		Foreground: !*background, Version: version,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bangerd:", err)
		os.Exit(1)
	}
}
