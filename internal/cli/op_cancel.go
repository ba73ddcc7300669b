package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) opCancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a running operation and roll back what it reserved",
		Args:  exactArgs(1, "one operation ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			o, err := c.OpCancel(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(a.streams.Out, "%s %s\n", o.ID, o.State)
			return nil
		},
	}
}
