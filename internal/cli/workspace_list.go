package cli

import (
	"github.com/spf13/cobra"
)

func (a *app) workspaceListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "list VM",
		Aliases:           []string{"ls"},
		Short:             "List the workspaces prepared into a VM",
		Args:              exactArgs(1, "a VM name"),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			ws, err := c.WorkspaceList(ctx, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.streams.Out, ws)
			}
			tw := newTable(a.streams.Out, "PATH", "REPO", "HEAD", "READONLY", "PREPARED", "LAST EXPORT")
			for _, w := range ws {
				exp := "-"
				if w.ExportBranch != "" {
					exp = w.ExportBranch + " " + short(w.ExportCommit)
				}
				row(tw, w.Path, w.Repo, short(w.Head), w.ReadOnly, ago(w.PreparedAt), exp)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
