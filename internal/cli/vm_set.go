package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/api"
)

func (a *app) vmSetCommand() *cobra.Command {
	var (
		p     api.VMSetParams
		vcpus int
	)
	cmd := &cobra.Command{
		Use:   "set NAME [--vcpus N] [--memory M] [--disk S]",
		Short: "Change a stopped VM's vCPUs, memory or work disk size (the disk only grows)",
		Long: "Changes take effect at the next start. The VM must be stopped; the work disk only\n" +
			"grows (its file grows now, and the guest grows the filesystem when it boots).",
		Example:           "  banger vm stop dev && banger vm set dev --vcpus 4 --memory 4G --disk 20G && banger vm start dev",
		Args:              exactArgs(1, "one VM name"),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			p.Name = args[0]
			if cmd.Flags().Changed("vcpus") {
				p.VCPUs = &vcpus
			}
			if p.VCPUs == nil && p.Memory == "" && p.Disk == "" {
				return usagef(cmd, "give at least one of --vcpus, --memory, --disk")
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			v, err := c.VMSet(cmd.Context(), p)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.streams.Out, "%s: %d vcpus, %s memory, %s disk\n", v.Name, v.VCPUs, mib(v.MemoryMiB), mib(v.DiskMiB))
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&vcpus, "vcpus", 0, "number of vCPUs")
	f.StringVar(&p.Memory, "memory", "", "memory, e.g. 2G")
	f.StringVar(&p.Disk, "disk", "", "work disk size, e.g. 20G (only grows)")
	return cmd
}
