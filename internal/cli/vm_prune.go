package cli

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/banger-dev/banger/internal/client"
)

func (a *app) vmPruneCommand() *cobra.Command {
	var all, force bool
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete stopped VMs (with --all, running ones too)",
		Long: "Deletes every VM that is stopped or failed. --all also deletes running VMs (and\n" +
			"cancels creates in flight), after asking on a terminal unless --force is given.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			vms, err := c.VMList(ctx)
			if err != nil {
				return err
			}
			var names, running []string
			for _, v := range vms {
				switch v.State {
				case "stopped", "error":
					names = append(names, v.Name)
				default:
					if all {
						names = append(names, v.Name)
						running = append(running, v.Name)
					}
				}
			}
			if len(names) == 0 {
				return nil
			}
			if len(running) > 0 && !force {
				list := strings.Join(running, ", ")
				if err := a.confirm(cmd, fmt.Sprintf("delete %d running VM(s) (%s) and everything in them?", len(running), list),
					fmt.Sprintf("--all would delete running VMs (%s); add --force to do so without asking", list)); err != nil {
					return err
				}
			}
			return a.forEachVM(ctx, names, func(ctx context.Context, c *client.Client, name string) error {
				if err := c.VMDelete(ctx, name, true); err != nil && !isNotFound(err) {
					return err
				}
				fmt.Fprintln(a.streams.Out, name)
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "also delete running VMs")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "with --all, do not ask")
	return cmd
}

// confirm asks question on a terminal and returns nil on yes; without a
// terminal to ask on it is a usage error saying refusal.
func (a *app) confirm(cmd *cobra.Command, question, refusal string) error {
	in, ok := a.streams.In.(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		return usagef(cmd, "%s", refusal)
	}
	fmt.Fprintf(a.streams.Err, "%s [y/N] ", question)
	answer, _ := bufio.NewReader(in).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return quietError{}
	}
	return nil
}
