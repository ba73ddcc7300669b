package daemon

import (
	"context"
	"fmt"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/guest"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/op"
	"github.com/banger-dev/banger/internal/rpc"
	"github.com/banger-dev/banger/internal/vm"
	"github.com/banger-dev/banger/internal/vmm"
)

// imagePromote starts an operation that makes a stopped VM's root
// filesystem (its image plus everything written over it, not /work) image
// p.Name: the VM boots in maintenance, its own kernel reads its disks and
// its agent streams the merged root through the tunnel; the host writes
// the new ext4 from that stream and never mounts what the guest wrote.
func (d *Daemon) imagePromote(ctx context.Context, _ rpc.Caller, p api.ImagePromoteParams) (api.Operation, error) {
	if err := d.images.NewName(ctx, p.Name); err != nil {
		return api.Operation{}, err
	}
	v, err := d.vms.Get(ctx, p.VM)
	if err != nil {
		return api.Operation{}, err
	}
	if err := vm.Stopped(v); err != nil {
		return api.Operation{}, err
	}
	why := "being promoted to image " + p.Name
	o := d.ops.Begin("image.promote", p.Name, func(ctx context.Context, pr *op.Progress) error {
		pr.Phase("booting vm "+v.Name+" for maintenance", 0)
		return d.vms.Maintain(ctx, v.ID, why, func(ctx context.Context, mv model.VM, h vmm.Handles) error {
			base, err := d.images.Content(ctx, mv.ImageID)
			if err != nil {
				return err
			}
			conn, err := d.boot.DialGuest(ctx, mv, h, guest.ExportPort)
			if err != nil {
				return fmt.Errorf("reaching vm %s's root export: %w", v.Name, err)
			}
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			_, err = d.images.Promote(ctx, p.Name, v.Name, base, conn, pr)
			return err
		})
	})
	return wireOp(o), nil
}
