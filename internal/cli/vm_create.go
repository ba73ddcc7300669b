package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/banger-dev/banger/internal/api"
)

func (a *app) vmCreateCommand() *cobra.Command {
	var (
		p      api.VMCreateParams
		vcpus  int
		detach bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a VM (and boot it, unless --no-start)",
		Example: "  banger vm create dev\n" +
			"  banger vm create dev --image debian-12 --vcpus 4 --memory 4G --disk 20G\n" +
			"  banger vm create dev --no-start --detach",
		Args: exactArgs(1, "one VM name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p.Name = args[0]
			setVCPUs(cmd, &p, vcpus)
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			if err := a.ensureImage(ctx, c, p.Image); err != nil {
				return err
			}
			res, err := c.VMCreate(ctx, p)
			if err != nil {
				return err
			}
			a.warn(res.Warnings)
			if detach {
				if asJSON {
					return printJSON(a.streams.Out, res)
				}
				fmt.Fprintln(a.streams.Out, res.Operation.ID)
				return nil
			}
			final, err := a.waitOp(ctx, c, res.Operation, "creating vm "+p.Name)
			if err != nil {
				return err
			}
			if err := opErr(final); err != nil {
				return err
			}
			v, err := c.VMShow(ctx, res.VM.ID)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.streams.Out, v)
			}
			fmt.Fprintf(a.streams.Out, "vm %s %s (id %s, %s)\n", v.Name, v.State, v.ID, addressOf(v))
			return nil
		},
	}
	f := cmd.Flags()
	machineFlags(f, &p, &vcpus)
	f.BoolVar(&p.NoStart, "no-start", false, "create the VM without booting it")
	f.BoolVarP(&detach, "detach", "d", false, "print the operation ID and return at once")
	f.BoolVar(&asJSON, "json", false, "print the VM (or, with --detach, the VM and operation) as JSON")
	return cmd
}

// machineFlags are the flags create and run share: what the VM is made of.
func machineFlags(f *pflag.FlagSet, p *api.VMCreateParams, vcpus *int) {
	f.StringVar(&p.Image, "image", "", "image name or reference (default: the daemon's default_image, debian-12)")
	f.IntVar(vcpus, "vcpus", 0, "number of vCPUs, 1–32 (default: default_vcpus, 2)")
	f.StringVar(&p.Memory, "memory", "", "memory, e.g. 512M, 2G or 2048 (MiB) (default: default_memory, 1G)")
	f.StringVar(&p.Disk, "disk", "", "size of the persistent /work disk, at least 1G (default: default_disk, 8G)")
	f.BoolVar(&p.Cold, "cold", false, "boot the kernel even when a template of the image (left by its first boot) would start the VM at once")
	f.StringArrayVarP(&p.Publish, "publish", "p", nil, "forward HOSTPORT:GUESTPORT[/tcp] from the host's loopback to the guest, as docker run -p (repeatable)")
	f.StringVar(&p.Network, "network", "", "bridge (banger's bridge: other VMs, the host, NAT out; the default) or none (no network device; SSH and --publish still work, through the agent)")
}

// setVCPUs sends --vcpus only when given, so an explicit 0 is refused by
// the daemon instead of meaning "default".
func setVCPUs(cmd *cobra.Command, p *api.VMCreateParams, vcpus int) {
	if cmd.Flags().Changed("vcpus") {
		p.VCPUs = &vcpus
	}
}
