package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/client"
)

func (a *app) vmDeleteCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:               "delete NAME...",
		Aliases:           []string{"rm"},
		Short:             "Delete VMs and everything banger made for them",
		Args:              minArgs(1, "at least one VM name"),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.forEachVM(cmd.Context(), args, func(ctx context.Context, c *client.Client, name string) error {
				if err := c.VMDelete(ctx, name, force); err != nil {
					return err
				}
				fmt.Fprintln(a.streams.Out, name)
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "stop running VMs (or cancel their creation) first")
	return cmd
}

// forEachVM runs f for every named VM, reporting each failure and going on;
// it fails if any did.
func (a *app) forEachVM(ctx context.Context, names []string, f func(context.Context, *client.Client, string) error) error {
	c, err := a.client(ctx)
	if err != nil {
		return err
	}
	failed := 0
	for _, name := range names {
		if err := f(ctx, c, name); err != nil {
			fmt.Fprintf(a.streams.Err, "banger: %s\n", err)
			failed++
		}
	}
	if failed > 0 {
		return quietError{}
	}
	return nil
}
