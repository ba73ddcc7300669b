package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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
		e     execFlags
	)
	cmd := &cobra.Command{
		Use:   "run [flags] [-- CMD...]",
		Short: "Create and boot a VM, run a command in it, and exit with its status",
		Long: "Creates a VM, boots it, runs CMD in it (its words are its argv, as for `vm ssh`)\n" +
			"and exits with CMD's status. With --rm the VM belongs to this command: the daemon\n" +
			"deletes it when the command ends, however it ends (exit, Ctrl-C, SIGTERM, SIGHUP,\n" +
			"a broken pipe, or banger being killed).\n\n" +
			"An OCI image's entrypoint and cmd are honoured as docker run does: without CMD\n" +
			"the image's entrypoint and cmd run; with CMD, the entrypoint runs with CMD as its\n" +
			"arguments. Its env, working directory and user are the defaults of every command.",
		Example: "  banger vm run -- uname -a\n" +
			"  banger vm run --rm --memory 2G -- sh -c 'nproc; free -m'\n" +
			"  banger vm run --rm -it -- bash\n" +
			"  banger vm run --rm --image docker.io/library/busybox:1.36 -- busybox uname -a",
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			ctx := cmd.Context()
			if err := e.check(cmd); err != nil {
				return err
			}
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
			if err := a.ensureImage(ctx, c, p.Image); err != nil {
				return err
			}
			if args, err = a.runArgv(ctx, c, p.Image, args); err != nil {
				return err
			}
			if len(args) == 0 {
				return usagef(cmd, "give the command to run after --: banger vm run -- CMD... (the image has no entrypoint or cmd)")
			}
			var res api.VMCreateResult
			if rm {
				// The VM is tied to this connection: if banger dies in any
				// way, the kernel closes it and the daemon deletes the VM.
				sess, err := c.Session(ctx)
				if err != nil {
					return err
				}
				defer sess.Close()
				p.AutoRemove = true
				if res, err = sess.VMCreate(ctx, p); err != nil {
					return err
				}
			} else if res, err = c.VMCreate(ctx, p); err != nil {
				return err
			} else {
				defer fmt.Fprintf(a.streams.Err, "banger: vm %s stays; remove it with `banger vm delete --force %s` (or use --rm)\n", p.Name, p.Name)
			}
			a.warn(res.Warnings)
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
			sc, err := dialVM(ctx, c, res.VM.ID, info)
			if err != nil {
				return err
			}
			defer sc.Close()
			// Ctrl-C, SIGTERM and SIGHUP go to the remote command; the
			// deferred --rm still runs when it has ended.
			code, err := a.runRemote(ctx, sc, args, e)
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
	e.add(f)
	return cmd
}

// runArgv is what vm run runs: as docker run, an OCI image's
// entrypoint with args, or with its cmd when there are no args.
func (a *app) runArgv(ctx context.Context, c *client.Client, ref string, args []string) ([]string, error) {
	if ref == "" {
		return args, nil
	}
	im, err := c.ImageShow(ctx, ref)
	if isNotFound(err) {
		return args, nil // a catalog image the daemon will fetch
	}
	if err != nil || im.Config == nil {
		return args, err
	}
	if len(args) == 0 {
		args = im.Config.Cmd
	}
	return append(append([]string{}, im.Config.Entrypoint...), args...), nil
}

// isNotFound reports whether the daemon answered "not found".
func isNotFound(err error) bool {
	var rerr *client.Error
	return errors.As(err, &rerr) && rerr.Code == api.CodeNotFound
}
