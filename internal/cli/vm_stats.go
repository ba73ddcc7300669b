package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) vmStatsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "stats [NAME...]",
		Short:             "Show CPU, memory, disk and network counters of running VMs (all of them without names)",
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			names := args
			vms, err := c.VMList(cmd.Context())
			if err != nil {
				return err
			}
			state := map[string]string{}
			for _, v := range vms {
				state[v.Name] = v.State
				if len(args) == 0 && v.State == "running" {
					names = append(names, v.Name)
				}
			}
			tw := newTable(a.streams.Out, "NAME", "CPU TIME", "MEM (RSS/LIMIT)", "DISK READ", "DISK WRITE", "NET RX", "NET TX")
			var all []any
			for _, name := range names {
				if s, ok := state[name]; ok && s != "running" {
					fmt.Fprintf(a.streams.Err, "banger: vm %s is %s; it has no counters\n", name, s)
					continue
				}
				st, err := c.VMStats(cmd.Context(), name)
				if err != nil {
					return err
				}
				if asJSON {
					all = append(all, st)
					continue
				}
				row(tw, st.Name, fmt.Sprintf("%.1fs", st.CPUSeconds),
					bytesStr(st.MemoryRSSBytes)+" / "+mib(st.MemoryMiB),
					bytesStr(st.DiskReadBytes), bytesStr(st.DiskWriteBytes),
					bytesStr(st.NetRxBytes), bytesStr(st.NetTxBytes))
			}
			if asJSON {
				if len(all) == 1 {
					return printJSON(a.streams.Out, all[0])
				}
				return printJSON(a.streams.Out, all)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object (an array for several VMs)")
	return cmd
}

// bytesStr renders a byte count in binary units.
func bytesStr(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
