package cli

import (
	"github.com/spf13/cobra"
)

func (a *app) vmSSHCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ssh NAME [-- CMD...]",
		Short: "Open a shell in a VM, or run a command and exit with its status",
		Example: "  banger vm ssh dev\n" +
			"  banger vm ssh dev -- uname -a\n" +
			"  tar c . | banger vm ssh dev -- tar x -C /work",
		Args:              minArgs(1, "a VM name"),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() > 1 || (cmd.ArgsLenAtDash() < 0 && len(args) > 1) {
				return usagef(cmd, "put the command after --: banger vm ssh NAME -- CMD...")
			}
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			info, err := c.VMSSHInfo(ctx, args[0])
			if err != nil {
				return err
			}
			sc, err := dialVM(ctx, info)
			if err != nil {
				return err
			}
			defer sc.Close()
			var code int
			if len(args) > 1 {
				code, err = a.runRemote(ctx, sc, args[1:])
			} else {
				code, err = a.interactiveShell(sc)
			}
			if err != nil {
				return err
			}
			if code != 0 {
				return exitCodeError{code}
			}
			return nil
		},
	}
}
