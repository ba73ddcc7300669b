package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) vmRestoreCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "restore NAME SNAP",
		Short: "Take a VM back to one of its snapshots: memory, processes and disks",
		Long: "Takes the VM back to the moment of snapshot SNAP: its memory and running processes,\n" +
			"its root layer and /work. A running VM is stopped first, and what it did since the\n" +
			"snapshot is gone. Its clock is set to the host's. A snapshot taken with another\n" +
			"QEMU, or before `vm set` changed the VM, is refused and nothing changes.",
		Example:           "  banger vm restore dev before-upgrade",
		Args:              exactArgs(2, "a VM name and a snapshot name"),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			v, err := c.VMRestore(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(a.streams.Out, "vm %s restored to %s and running\n", v.Name, args[1])
			return nil
		},
	}
}
