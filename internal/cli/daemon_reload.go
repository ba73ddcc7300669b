package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/client"
)

func (a *app) daemonReloadCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Have the running bangerd read its config file again (also on SIGHUP)",
		Long: "Applies the keys a running daemon can take at once (default_image, default_vcpus,\n" +
			"default_memory, default_disk, stop_timeout, op_retention, log_level) and names the\n" +
			"changed keys that take effect only when bangerd restarts. A file with an error\n" +
			"changes nothing.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := client.New(a.socketPath())
			res, err := c.Reload(cmd.Context())
			if errors.Is(err, client.ErrNotRunning) {
				return fmt.Errorf("%w; the next banger command starts it with the file as it is", err)
			}
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.streams.Out, res)
			}
			switch {
			case len(res.Applied) == 0 && len(res.NeedRestart) == 0:
				fmt.Fprintln(a.streams.Out, "configuration reloaded; nothing changed")
			case len(res.Applied) > 0:
				fmt.Fprintf(a.streams.Out, "applied: %s\n", strings.Join(res.Applied, ", "))
			}
			if len(res.NeedRestart) > 0 {
				fmt.Fprintf(a.streams.Out, "changed, in force after a restart (`banger daemon stop`, then any command): %s\n", strings.Join(res.NeedRestart, ", "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the applied and restart-only keys as JSON")
	return cmd
}
