package cli

import (
	"bytes"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/api"
)

func (a *app) vmLogsCommand() *cobra.Command {
	var (
		follow bool
		tail   int
	)
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a VM's serial console (-f to follow until the VM stops)",
		Example: "  banger vm logs dev --tail 20\n" +
			"  banger vm logs -f dev",
		Args:              exactArgs(1, "one VM name"),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			if tail < -1 {
				return usagef(cmd, "--tail must be a number of lines (0 or more)")
			}
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			p := api.VMLogsParams{Name: args[0]}
			// With --tail, read what there is first and print its end.
			var held bytes.Buffer
			holding := tail >= 0
			for {
				chunk, err := c.VMLogs(ctx, p)
				if err != nil {
					return err
				}
				p.Offset = chunk.Next
				if holding {
					held.WriteString(chunk.Data)
				} else if _, err := io.WriteString(a.streams.Out, chunk.Data); err != nil {
					return err
				}
				if chunk.Data != "" {
					continue
				}
				if holding {
					holding = false
					if _, err := a.streams.Out.Write(lastLines(held.Bytes(), tail)); err != nil {
						return err
					}
				}
				if !follow || !chunk.Running {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(250 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until the VM stops or you interrupt")
	cmd.Flags().IntVarP(&tail, "tail", "n", -1, "print only the last N lines (then follow, with -f)")
	return cmd
}

// lastLines returns the last n lines of b.
func lastLines(b []byte, n int) []byte {
	if n == 0 {
		return nil
	}
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end--
	}
	for i := end - 1; i >= 0; i-- {
		if b[i] == '\n' {
			if n--; n == 0 {
				return b[i+1:]
			}
		}
	}
	return b
}
