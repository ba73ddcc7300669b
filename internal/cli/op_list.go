package cli

import "github.com/spf13/cobra"

func (a *app) opListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List recent operations",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			ops, err := c.OpList(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.streams.Out, ops)
			}
			tw := newTable(a.streams.Out, "ID", "KIND", "TARGET", "STATE", "PHASE", "STARTED", "ERROR")
			for _, o := range ops {
				row(tw, o.ID, o.Kind, o.Target, o.State, o.Phase, ago(o.CreatedAt), o.Error)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}
