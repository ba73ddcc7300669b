package cli

import (
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/api"
)

func (a *app) vmLogsCommand() *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:               "logs NAME",
		Short:             "Print a VM's serial console (-f to follow)",
		Args:              exactArgs(1, "one VM name"),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			p := api.VMLogsParams{Name: args[0]}
			for {
				chunk, err := c.VMLogs(ctx, p)
				if err != nil {
					return err
				}
				if _, err := io.WriteString(a.streams.Out, chunk.Data); err != nil {
					return err
				}
				p.Offset = chunk.Next
				if chunk.Data != "" {
					continue
				}
				if !follow {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(250 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until interrupted")
	return cmd
}
