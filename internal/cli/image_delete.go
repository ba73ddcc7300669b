package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) imageDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME...",
		Aliases: []string{"rm"},
		Short:   "Delete images no VM uses",
		Args:    minArgs(1, "at least one image name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			failed := false
			for _, name := range args {
				if err := c.ImageDelete(cmd.Context(), name); err != nil {
					fmt.Fprintf(a.streams.Err, "banger: %s\n", err)
					failed = true
					continue
				}
				fmt.Fprintln(a.streams.Out, name)
			}
			if failed {
				return quietError{}
			}
			return nil
		},
	}
}
