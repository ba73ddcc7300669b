package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/client"
)

func (a *app) daemonStartCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "start",
		Short: "Start bangerd in the background if it is not running",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c := client.New(a.socketPath())
			st, err := c.Status(ctx)
			if err == nil {
				fmt.Fprintf(a.streams.Out, "bangerd is already running (pid %d, socket %s)\n", st.PID, st.Socket)
				return nil
			}
			if !errors.Is(err, client.ErrNotRunning) {
				return err
			}
			if err := a.startDaemon(ctx, c); err != nil {
				return err
			}
			st, err = c.Status(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.streams.Out, "bangerd started (pid %d, socket %s)\n", st.PID, st.Socket)
			return nil
		},
	}
}
