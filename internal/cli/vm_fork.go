package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/api"
)

func (a *app) vmForkCommand() *cobra.Command {
	var (
		count  int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "fork NAME NEW [--count N]",
		Short: "Make running copies of a running VM, each with its own identity",
		Long: "Copies the running VM NAME as it is this moment: its memory and running processes,\n" +
			"its root layer and /work (a prepared workspace too). NAME is paused only while it is\n" +
			"saved, then runs on. Each copy is a VM of its own: its own hostname, address, MAC,\n" +
			"SSH host key and machine-id, a freshly seeded RNG and the host's clock, set before it\n" +
			"counts as running. One copy is called NEW; with --count N they are NEW-1 … NEW-N.\n" +
			"Copies publish no ports (NAME's are its own). `banger workspace export` of a copy\n" +
			"goes to the branch banger/<copy>. Either every copy runs or none is left.",
		Example: "  banger vm fork dev try --count 4\n" +
			"  for i in 1 2 3 4; do banger vm ssh try-$i -- ./attempt.sh $i & done; wait",
		Args:              exactArgs(2, "the VM to copy and a name for the copies"),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			start := time.Now()
			forks, err := c.VMFork(cmd.Context(), api.VMForkParams{Name: args[0], New: args[1], Count: count})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.streams.Out, forks)
			}
			tw := newTable(a.streams.Out, "NAME", "ADDRESS", "STATE")
			for _, v := range forks {
				row(tw, v.Name, addressOf(v), v.State)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(a.streams.Err, "banger: forked %s into %s in %s\n", args[0], plural(len(forks), "vm"), time.Since(start).Round(10*time.Millisecond))
			return nil
		},
	}
	cmd.Flags().IntVar(&count, "count", 1, "how many copies")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}
