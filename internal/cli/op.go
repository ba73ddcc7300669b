package cli

import "github.com/spf13/cobra"

func (a *app) opCommand() *cobra.Command {
	cmd := group("op", "Inspect and cancel asynchronous operations")
	cmd.AddCommand(a.opStatusCommand(), a.opCancelCommand(), a.opListCommand(), a.opWaitCommand())
	return cmd
}
