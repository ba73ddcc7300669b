package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) opWaitCommand() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait ID",
		Short: "Wait for an operation to finish; exit 0 if it succeeded, 1 otherwise",
		Args:  exactArgs(1, "one operation ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			for {
				o, err := c.OpStatus(ctx, args[0])
				if err != nil {
					return err
				}
				if o.State != "running" {
					printOp(a.streams.Out, o)
					return opErr(o)
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("operation %s is still %s (%s) after %s", o.ID, o.State, o.Phase, timeout)
				case <-time.After(100 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (default: wait as long as it takes)")
	return cmd
}
