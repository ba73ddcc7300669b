package cli

import (
	"github.com/spf13/cobra"
)

func (a *app) vmSSHCommand() *cobra.Command {
	var e execFlags
	cmd := &cobra.Command{
		Use:   "ssh NAME [-- CMD...]",
		Short: "Open a shell in a VM, or run a command and exit with its status",
		Long: "With no command, an interactive login shell. With `-- CMD...`, CMD runs with\n" +
			"exactly the words given as its argv (no shell on the guest re-splits or expands\n" +
			"them; use `-- sh -c '...'` for shell syntax), stdin is forwarded, Ctrl-C, SIGTERM\n" +
			"and SIGHUP reach it, and banger exits with its status (128+N if signal N ended it).",
		Example: "  banger vm ssh dev\n" +
			"  banger vm ssh dev -- uname -a\n" +
			"  banger vm ssh -t dev -- top\n" +
			"  banger vm ssh dev -e FOO=bar -w /work -- make test\n" +
			"  tar c . | banger vm ssh dev -- tar x -C /work",
		Args:              minArgs(1, "a VM name"),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() > 1 || (cmd.ArgsLenAtDash() < 0 && len(args) > 1) {
				return usagef(cmd, "put the command after --: banger vm ssh NAME -- CMD...")
			}
			if err := e.check(cmd); err != nil {
				return err
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
			sc, err := dialVM(ctx, c, args[0], info)
			if err != nil {
				return err
			}
			defer sc.Close()
			var code int
			if len(args) > 1 {
				code, err = a.runRemote(ctx, sc, args[1:], e)
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
	e.add(cmd.Flags())
	return cmd
}
