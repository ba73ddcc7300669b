package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/client"
)

func (a *app) vmCommand() *cobra.Command {
	cmd := group("vm", "Create, run and manage VMs")
	cmd.AddCommand(
		a.vmCreateCommand(), a.vmListCommand(), a.vmShowCommand(), a.vmDeleteCommand(),
		a.vmStartCommand(), a.vmStopCommand(), a.vmRestartCommand(),
		a.vmSSHCommand(), a.vmRunCommand(), a.vmLogsCommand(), a.vmStatsCommand(), a.vmPruneCommand(), a.vmWaitCommand(), a.vmSSHConfigCommand(), a.vmSetCommand(), a.vmSnapshotCommand(), a.vmRestoreCommand(), a.vmForkCommand(), a.vmCpCommand(), a.vmTunnelCommand(),
	)
	return cmd
}

// completeVMNames completes positional arguments with VM names.
func (a *app) completeVMNames(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	// Completion never starts the daemon: a shell tab must not spawn it.
	vms, err := client.New(a.socketPath()).VMList(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	names := make([]string, len(vms))
	for i, v := range vms {
		names[i] = v.Name
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// lifecycleCommand builds start, stop and restart: each takes VM names and
// prints every VM's resulting state.
func (a *app) lifecycleCommand(use, short string, call func(*client.Client, context.Context, string) (api.VM, error)) *cobra.Command {
	return &cobra.Command{
		Use:               use + " NAME...",
		Short:             short,
		Args:              minArgs(1, "at least one VM name"),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.forEachVM(cmd.Context(), args, func(ctx context.Context, c *client.Client, name string) error {
				v, err := call(c, ctx, name)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.streams.Out, "%s %s\n", v.Name, v.State)
				return nil
			})
		},
	}
}
