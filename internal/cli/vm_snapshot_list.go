package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) vmSnapshotListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "list NAME",
		Aliases:           []string{"ls"},
		Short:             "List a VM's snapshots",
		Args:              exactArgs(1, "one VM name"),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			sns, err := c.VMSnapshotList(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.streams.Out, sns)
			}
			tw := newTable(a.streams.Out, "NAME", "SIZE", "VCPUS", "MEMORY", "QEMU", "CREATED")
			for _, sn := range sns {
				row(tw, sn.Name, bytesStr(sn.SizeBytes), sn.VCPUs, mib(sn.MemoryMiB), fmt.Sprintf("%s %s", sn.Driver, sn.Version), ago(sn.CreatedAt))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}
