package cli

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"
)

func (a *app) vmTunnelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "tunnel NAME [PORT]",
		Short: "Connect stdin and stdout to a TCP port of a running VM (default 22)",
		Long: "Connects stdin and stdout to a TCP port on the guest's loopback, through the\n" +
			"daemon: for a VM created with --network none, through the agent, which needs no\n" +
			"guest network. It is the ProxyCommand that `banger vm ssh-config` writes for\n" +
			"such VMs, and a way to reach any guest port without publishing it.",
		Example: "  banger vm tunnel dev 5432 < query.bin\n  ssh -o ProxyCommand='banger vm tunnel %n' dev",
		Args: func(cmd *cobra.Command, args []string) error {
			return rangeArgs(cmd, args, 1, 2, "a VM name and optionally a port")
		},
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			port := 22
			if len(args) == 2 {
				n, err := strconv.Atoi(args[1])
				if err != nil || n < 1 || n > 65535 {
					return usagef(cmd, "port %q is not a TCP port (1-65535)", args[1])
				}
				port = n
			}
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			conn, err := c.VMTunnel(ctx, args[0], port)
			if err != nil {
				return err
			}
			defer conn.Close()
			go func() {
				_, _ = io.Copy(conn, a.streams.In)
				_ = conn.CloseWrite()
			}()
			if _, err := io.Copy(a.streams.Out, conn); err != nil {
				return fmt.Errorf("tunnel to vm %s port %d: %w", args[0], port, err)
			}
			return nil
		},
	}
}
