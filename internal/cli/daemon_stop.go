package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/client"
	"github.com/banger-dev/banger/internal/proc"
)

func (a *app) daemonStopCommand() *cobra.Command {
	var teardown bool
	cmd := &cobra.Command{
		Use:   "stop",
		Short: "Stop bangerd; running VMs keep running",
		Long: "Stop bangerd; running VMs keep running and the next daemon finds them again.\n" +
			"With --teardown (refused while any VM runs) it also removes everything banger added\n" +
			"to the host: the bridge, the taps and its nftables table.",
		Args: noArgs,
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
			if err := c.Shutdown(ctx, teardown); err != nil {
				return err
			}
			// Wait until the process is gone (or, if it cannot be seen from
			// here, the socket stops answering), so a following start does
			// not race the old daemon and its clean-up is finished.
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				_, err := c.Status(ctx)
				gone := errors.Is(err, client.ErrNotRunning)
				if gone && (st.PID <= 0 || proc.Exited(st.PID)) {
					fmt.Fprintf(a.streams.Out, "bangerd stopped (was pid %d)\n", st.PID)
					return nil
				}
				time.Sleep(50 * time.Millisecond)
			}
			return fmt.Errorf("bangerd (pid %d) is still answering 30s after being asked to stop", st.PID)
		},
	}
	cmd.Flags().BoolVar(&teardown, "teardown", false, "also remove banger's bridge, taps and nftables table (refused while VMs run)")
	return cmd
}
