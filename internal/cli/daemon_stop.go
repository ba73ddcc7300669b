package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/client"
)

func (a *app) daemonStopCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "stop",
		Short: "Stop bangerd; running VMs keep running",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c := client.New(a.socketPath())
			st, err := c.Status(ctx)
			if errors.Is(err, client.ErrNotRunning) {
				fmt.Fprintln(a.streams.Out, "bangerd is not running")
				return nil
			}
			if err != nil {
				return err
			}
			if err := c.Shutdown(ctx); err != nil {
				return err
			}
			// Wait until the socket stops answering, so a following start
			// does not race the old daemon.
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				if _, err := c.Status(ctx); errors.Is(err, client.ErrNotRunning) {
					fmt.Fprintf(a.streams.Out, "bangerd stopped (was pid %d)\n", st.PID)
					return nil
				}
				time.Sleep(50 * time.Millisecond)
			}
			return fmt.Errorf("bangerd (pid %d) is still answering 30s after being asked to stop", st.PID)
		},
	}
}
