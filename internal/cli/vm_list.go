package cli

import (
	"github.com/spf13/cobra"
)

func (a *app) vmListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List VMs",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			vms, err := c.VMList(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.streams.Out, vms)
			}
			tw := newTable(a.streams.Out, "NAME", "STATE", "IMAGE", "VCPUS", "MEMORY", "DISK", "IP", "CREATED")
			for _, v := range vms {
				row(tw, v.Name, v.State, v.Image, v.VCPUs, mib(v.MemoryMiB), mib(v.DiskMiB), v.IP, ago(v.CreatedAt))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}
