package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) imagePullCommand() *cobra.Command {
	var detach bool
	cmd := &cobra.Command{
		Use:   "pull NAME",
		Short: "Fetch or build an image (debian-12 is built from Debian packages)",
		Args:  exactArgs(1, "one image name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			o, err := c.ImagePull(ctx, args[0])
			if err != nil {
				return err
			}
			if detach {
				fmt.Fprintln(a.streams.Out, o.ID)
				return nil
			}
			final, err := a.waitOp(ctx, c, o, "pulling image "+args[0])
			if err != nil {
				return err
			}
			if err := opErr(final); err != nil {
				return err
			}
			fmt.Fprintf(a.streams.Out, "image %s ready\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "print the operation ID and return at once")
	return cmd
}
