package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) imageShowCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show NAME|ID",
		Short: "Show one image, by name or ID",
		Args:  exactArgs(1, "one image name or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			im, err := c.ImageShow(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.streams.Out, im)
			}
			tw := tabwriter.NewWriter(a.streams.Out, 0, 0, 2, ' ', 0)
			row(tw, "Name:", im.Name)
			row(tw, "ID:", im.ID)
			row(tw, "Source:", im.Source)
			row(tw, "Digest:", im.Digest)
			row(tw, "Size:", fmt.Sprintf("%.1f MiB", float64(im.SizeBytes)/(1<<20)))
			row(tw, "Kernel:", im.KernelPath)
			if im.InitrdPath != "" {
				row(tw, "Initrd:", im.InitrdPath)
			}
			row(tw, "Rootfs:", im.RootfsPath)
			if len(im.UsedBy) > 0 {
				row(tw, "Used by:", strings.Join(im.UsedBy, ", "))
			}
			if c := im.Config; c != nil {
				if len(c.Entrypoint) > 0 {
					row(tw, "Entrypoint:", shellQuote(c.Entrypoint))
				}
				if len(c.Cmd) > 0 {
					row(tw, "Cmd:", shellQuote(c.Cmd))
				}
				if c.WorkingDir != "" {
					row(tw, "Workdir:", c.WorkingDir)
				}
				if c.User != "" {
					row(tw, "User:", c.User)
				}
				for _, e := range c.Env {
					row(tw, "Env:", e)
				}
			}
			row(tw, "Created:", im.CreatedAt.Local().Format(time.RFC3339))
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object")
	return cmd
}
