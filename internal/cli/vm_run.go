package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/client"
)

func (a *app) vmRunCommand() *cobra.Command {
	var (
		p     api.VMCreateParams
		vcpus int
		rm    bool
	)
	cmd := &cobra.Command{
		Use:   "run [flags] -- CMD...",
		Short: "Create and boot a VM, run a command in it, and exit with its status",
		Example: "  banger vm run -- uname -a\n" +
			"  banger vm run --rm --memory 2G -- sh -c 'nproc; free -m'",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef(cmd, "give the command to run after --: banger vm run -- CMD...")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			ctx := cmd.Context()
			setVCPUs(cmd, &p, vcpus)
			if p.Name == "" {
				var b [3]byte
				_, _ = rand.Read(b[:])
				p.Name = "run-" + hex.EncodeToString(b[:])
			}
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			res, err := c.VMCreate(ctx, p)
			if err != nil {
				return err
			}
			if rm {
				// Whatever happens from here on, the VM goes.
				defer func() {
					dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
					defer cancel()
					// A create that failed has already rolled itself back.
					if derr := c.VMDelete(dctx, res.VM.ID, true); derr != nil && !isNotFound(derr) {
						fmt.Fprintf(a.streams.Err, "banger: removing vm %s: %s\n", p.Name, derr)
					}
				}()
			}
			final, err := a.waitOp(ctx, c, res.Operation, "starting vm "+p.Name)
			if err != nil {
				return err
			}
			if err := opErr(final); err != nil {
				return err
			}
			info, err := c.VMSSHInfo(ctx, res.VM.ID)
			if err != nil {
				return err
			}
			sc, err := dialVM(ctx, info)
			if err != nil {
				return err
			}
			defer sc.Close()
			// Ctrl-C ends the remote command; the deferred --rm still runs.
			rctx, stop := signal.NotifyContext(ctx, os.Interrupt)
			defer stop()
			code, err := a.runRemote(rctx, sc, args)
			if err != nil {
				return err
			}
			if code != 0 {
				return exitCodeError{code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.Name, "name", "", "name for the VM (default run-XXXXXX)")
	machineFlags(f, &p, &vcpus)
	f.BoolVar(&rm, "rm", false, "delete the VM afterwards, whatever happened")
	return cmd
}

// isNotFound reports whether the daemon answered "not found".
func isNotFound(err error) bool {
	var rerr *client.Error
	return errors.As(err, &rerr) && rerr.Code == api.CodeNotFound
}
