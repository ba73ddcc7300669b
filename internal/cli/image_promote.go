package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) imagePromoteCommand() *cobra.Command {
	var detach bool
	cmd := &cobra.Command{
		Use:   "promote VM NAME",
		Short: "Make a stopped VM's root filesystem an image",
		Long: "Makes image NAME of what stopped VM's root filesystem holds: its image plus\n" +
			"everything written over it (not /work). The VM boots in maintenance: its own\n" +
			"kernel reads its disks and banger's agent streams the root, read-only, to the\n" +
			"daemon, which writes the new image; nothing the guest wrote is mounted on the\n" +
			"host. The VM's identity is left out (SSH host keys, machine-id, hostname, hosts,\n" +
			"banger's authorized key, the random seed), so each VM made from the image gets\n" +
			"its own. The image boots on the VM's kernel, with its image's config.",
		Example:           "  banger vm stop dev && banger image promote dev dev-base && banger vm run --image dev-base -- cat /etc/motd",
		Args:              exactArgs(2, "the VM and the new image's name"),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			o, err := c.ImagePromote(ctx, args[0], args[1])
			if err != nil {
				return err
			}
			if detach {
				fmt.Fprintln(a.streams.Out, o.ID)
				return nil
			}
			final, err := a.waitOp(ctx, c, o, "promoting vm "+args[0]+" to image "+args[1])
			if err != nil {
				return err
			}
			if err := opErr(final); err != nil {
				return err
			}
			fmt.Fprintf(a.streams.Out, "image %s ready\n", args[1])
			return nil
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "print the operation ID and return at once")
	return cmd
}
