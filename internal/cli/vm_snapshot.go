package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) vmSnapshotCommand() *cobra.Command {
	var name string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "snapshot NAME [--name SNAP]",
		Short: "Save a running VM's memory, processes and disks, and let it run on",
		Long: "Saves a running VM as it is this moment: its memory and device state, and copies\n" +
			"of its root layer and /work taken while it is paused, so they match. The VM runs on\n" +
			"afterwards (also when saving failed). `banger vm restore NAME SNAP` takes it back\n" +
			"there; snapshots go with the VM. The copies are sparse (reflinked where the\n" +
			"filesystem can); `vm snapshot list` shows what each takes on disk.",
		Example:           "  banger vm snapshot dev --name before-upgrade\n  banger vm restore dev before-upgrade",
		Args:              exactArgs(1, "one VM name"),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				name = "snap-" + time.Now().Format("20060102-150405")
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			sn, err := c.VMSnapshot(cmd.Context(), args[0], name)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.streams.Out, sn)
			}
			fmt.Fprintf(a.streams.Out, "snapshot %s of vm %s (%s)\n", sn.Name, sn.VM, bytesStr(sn.SizeBytes))
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the snapshot's name (default: snap-DATE-TIME)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object")
	cmd.AddCommand(a.vmSnapshotListCommand(), a.vmSnapshotDeleteCommand())
	return cmd
}
