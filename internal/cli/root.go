package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// Streams are the command's standard streams.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
	// ErrIsTerminal enables progress display on Err.
	ErrIsTerminal bool
}

// Run executes banger with args (without the program name) and returns the
// process exit code.
func Run(ctx context.Context, args []string, s Streams, version string) int {
	a := &app{streams: s, version: version}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(s.Err, "banger: %s\n", ue.msg)
		if ue.cmd != nil {
			fmt.Fprintf(s.Err, "Run '%s --help' for usage.\n", ue.cmd.CommandPath())
		}
		return ExitUsage
	}
	var ec exitCodeError
	if errors.As(err, &ec) {
		return ec.code
	}
	var q quietError
	if !errors.As(err, &q) {
		fmt.Fprintf(s.Err, "banger: %s\n", err)
	}
	return ExitError
}

// usageError is a mistake in how banger was called.
type usageError struct {
	cmd *cobra.Command
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}
}

// quietError is a failure already reported on stderr.
type quietError struct{}

func (quietError) Error() string { return "failed" }

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "banger",
		Short: "Disposable, isolated Linux VMs on your host",
		Long: "banger gives you disposable Linux microVMs as casually as `docker run`, with a real\n" +
			"kernel boundary. The CLI talks to bangerd, which it starts on first use.",
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.ArbitraryArgs,
		RunE:          groupRunE,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	pf := root.PersistentFlags()
	pf.StringVar(&a.socket, "socket", "", "daemon socket (env BANGER_SOCKET; default /run/banger/bangerd.sock as root, $XDG_RUNTIME_DIR/banger/bangerd.sock otherwise)")
	pf.StringVar(&a.stateDir, "state-dir", "", "state directory for a daemon banger starts (env BANGER_STATE_DIR)")
	pf.StringVar(&a.configPath, "config", "", "config file for a daemon banger starts (default <state-dir>/config.toml)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usagef(c, "%s", err) })

	root.AddCommand(a.daemonCommand(), a.vmCommand(), a.imageCommand(), a.workspaceCommand(), a.opCommand(), a.doctorCommand(), a.versionCommand(), a.completionCommand(root))
	return root
}

// groupRunE serves commands that only group subcommands: bare, they print
// help; with an unknown word, they fail as a usage error.
func groupRunE(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	// SuggestionsFor matches only prefixes unless a distance is set
	// (cobra sets one only on its own error path).
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usagef(cmd, "%s", msg)
}

// group makes a command that only holds subcommands.
func group(use, short string, aliases ...string) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Aliases: aliases, Args: cobra.ArbitraryArgs, RunE: groupRunE}
}

// exactArgs and minArgs check positional arguments as usage errors.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef(cmd, "%q takes %s, got %d argument(s)", cmd.CommandPath(), what, len(args))
		}
		return nil
	}
}

func minArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef(cmd, "%q needs %s", cmd.CommandPath(), what)
		}
		return nil
	}
}

func rangeArgs(cmd *cobra.Command, args []string, lo, hi int, what string) error {
	if len(args) < lo || len(args) > hi {
		return usagef(cmd, "%q takes %s, got %d argument(s)", cmd.CommandPath(), what, len(args))
	}
	return nil
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef(cmd, "%q takes no arguments, got %q", cmd.CommandPath(), args[0])
	}
	return nil
}
