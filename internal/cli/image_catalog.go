package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) imageCatalogCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "catalog [--json]",
		Short: "List the image names banger can fetch or build on first use",
		Long: "Lists the catalog: built-in names and those of your catalog file (catalog.toml\n" +
			"beside the config file, read at daemon start). An entry pulls an OCI reference or\n" +
			"builds a Debian suite:\n\n" +
			"  [images.alpine]\n  oci = \"docker.io/library/alpine:3.20\"\n\n" +
			"  [images.bookworm-build]\n  debian = \"bookworm\"\n  packages = [\"build-essential\"]\n\n" +
			"`banger vm create --image NAME` fetches an entry that is not local first.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			cat, err := c.ImageCatalog(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.streams.Out, cat)
			}
			tw := newTable(a.streams.Out, "NAME", "KIND", "LOCAL", "SOURCE")
			for _, e := range cat.Entries {
				local := "no"
				if e.Local {
					local = "yes"
				}
				row(tw, e.Name, e.Kind, local, e.Source)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if cat.Error != "" {
				fmt.Fprintf(a.streams.Err, "banger: the catalog file is not in use: %s\n", cat.Error)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the catalog as JSON")
	return cmd
}
