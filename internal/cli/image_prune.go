package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) imagePruneCommand() *cobra.Command {
	var all, force, asJSON bool
	cmd := &cobra.Command{
		Use:   "prune [--all [--force]] [--json]",
		Short: "Remove cached layers no image uses (with --all, also every image no VM uses)",
		Long: "Removes the OCI layer blobs in the cache that no image was built from (a pull or\n" +
			"import in flight keeps its own). --all first deletes every image no VM uses,\n" +
			"debian-12 included (it is built again on first use), asking on a terminal unless\n" +
			"--force is given.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if all && !force {
				if err := a.confirm(cmd, "delete every image no VM uses?", "--all deletes every image no VM uses; add --force to do so without asking"); err != nil {
					return err
				}
			}
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			r, err := c.ImagePrune(ctx, all)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.streams.Out, r)
			}
			for _, im := range r.Images {
				fmt.Fprintf(a.streams.Out, "deleted image %s\n", im)
			}
			fmt.Fprintf(a.streams.Out, "removed %d cached layers (%.1f MB)\n", r.Layers, float64(r.Bytes)/1e6)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&all, "all", "a", false, "also delete every image no VM uses")
	f.BoolVarP(&force, "force", "f", false, "with --all, do not ask")
	f.BoolVar(&asJSON, "json", false, "print what was removed as JSON")
	return cmd
}
