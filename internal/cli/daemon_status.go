package cli

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/client"
)

func (a *app) daemonStatusCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show whether bangerd runs, and how",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := client.New(a.socketPath())
			st, err := c.Status(cmd.Context())
			if errors.Is(err, client.ErrNotRunning) {
				return fmt.Errorf("%w; start it with `banger daemon start` (any banger command also starts it)", err)
			}
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.streams.Out, st)
			}
			tw := tabwriter.NewWriter(a.streams.Out, 0, 0, 2, ' ', 0)
			row(tw, "Status:", "running")
			row(tw, "Version:", st.Version)
			row(tw, "PID:", st.PID)
			row(tw, "Uptime:", (time.Duration(st.UptimeSeconds) * time.Second).String())
			row(tw, "Socket:", st.Socket)
			row(tw, "State dir:", st.StateDir)
			row(tw, "Driver:", st.Driver+" ("+st.DriverReason+")")
			row(tw, "VMs:", fmt.Sprintf("%d (%d running)", st.VMs, st.RunningVMs))
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object")
	return cmd
}
