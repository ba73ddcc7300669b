package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) doctorCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this host for what banger needs, and what banger left on it",
		Long: "doctor asks bangerd to check KVM (by booting a probe guest), the VMM binaries, system\n" +
			"tools, kernel features, the socket's permissions, free disk, the default image, and\n" +
			"the bridge, taps, nftables table and VM processes banger owns. Each problem comes with\n" +
			"a fix. It exits 1 when any check fails.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			checks, err := c.Doctor(cmd.Context())
			if err != nil {
				return err
			}
			failed := 0
			for _, ch := range checks {
				if ch.Status == "FAIL" {
					failed++
				}
			}
			if asJSON {
				if err := printJSON(a.streams.Out, checks); err != nil {
					return err
				}
			} else {
				tw := newTable(a.streams.Out, "NAME", "STATUS", "DETAIL")
				for _, ch := range checks {
					row(tw, ch.Name, ch.Status, ch.Detail)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				first := true
				for _, ch := range checks {
					if ch.Status == "OK" || ch.Fix == "" {
						continue
					}
					if first {
						fmt.Fprintln(a.streams.Out, "\nFIX")
						first = false
					}
					fmt.Fprintf(a.streams.Out, "  %s (%s): %s\n", ch.Name, ch.Status, ch.Fix)
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d check(s) failed", failed)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of checks {name, status, detail, fix}")
	return cmd
}
