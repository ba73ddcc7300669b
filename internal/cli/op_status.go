package cli

import "github.com/spf13/cobra"

func (a *app) opStatusCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Show an operation's phase, progress and outcome",
		Args:  exactArgs(1, "one operation ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			o, err := c.OpStatus(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.streams.Out, o)
			}
			printOp(a.streams.Out, o)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object")
	return cmd
}
