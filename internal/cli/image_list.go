package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) imageListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List local images",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			ims, err := c.ImageList(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.streams.Out, ims)
			}
			tw := newTable(a.streams.Out, "NAME", "ID", "SIZE", "VMS", "SOURCE", "CREATED")
			for _, im := range ims {
				name := im.Name
				if name == "" {
					name = "<none>" // replaced or deleted, kept for its VMs
				}
				row(tw, name, shortID(im.ID), fmt.Sprintf("%.0fM", float64(im.SizeBytes)/(1<<20)), len(im.UsedBy), im.Source, ago(im.CreatedAt))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

// shortID is an image ID as tables show it: 12 hex digits, which
// `image show` accepts.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}
