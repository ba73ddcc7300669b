package cli

import "github.com/spf13/cobra"

func (a *app) daemonCommand() *cobra.Command {
	cmd := group("daemon", "Start, stop and inspect bangerd")
	cmd.AddCommand(a.daemonStartCommand(), a.daemonStopCommand(), a.daemonStatusCommand(), a.daemonReloadCommand())
	return cmd
}
