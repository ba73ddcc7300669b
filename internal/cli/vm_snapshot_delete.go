package cli

import (
	"github.com/spf13/cobra"
)

func (a *app) vmSnapshotDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:               "delete NAME SNAP...",
		Aliases:           []string{"rm"},
		Short:             "Delete snapshots of a VM",
		Args:              minArgs(2, "a VM name and one or more snapshot names"),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			for _, sn := range args[1:] {
				if err := c.VMSnapshotDelete(cmd.Context(), args[0], sn); err != nil {
					return err
				}
			}
			return nil
		},
	}
}
