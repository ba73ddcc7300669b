package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) vmWaitCommand() *cobra.Command {
	var (
		state   string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:               "wait NAME",
		Short:             "Wait until a VM is in a state (running by default)",
		Args:              exactArgs(1, "one VM name"),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			if state != "running" && state != "stopped" {
				return usagef(cmd, "--state must be running or stopped, not %q", state)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			for {
				v, err := c.VMShow(ctx, args[0])
				if err != nil {
					if ctx.Err() != nil {
						return fmt.Errorf("vm %s did not become %s within %s", args[0], state, timeout)
					}
					return err
				}
				if v.State == state {
					fmt.Fprintf(a.streams.Out, "%s %s\n", v.Name, v.State)
					return nil
				}
				if state == "running" && (v.State == "stopped" || v.State == "error") {
					return fmt.Errorf("vm %s is %s, so it will not become running by itself; start it with `banger vm start %s`", v.Name, v.State, v.Name)
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("vm %s is still %s after %s", v.Name, v.State, timeout)
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().StringVar(&state, "state", "running", "the state to wait for: running or stopped")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up after this long")
	return cmd
}
