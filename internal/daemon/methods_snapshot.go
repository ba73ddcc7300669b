package daemon

import (
	"context"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/rpc"
)

func wireSnapshot(vm model.VM, sn model.Snapshot) api.Snapshot {
	return api.Snapshot{VM: vm.Name, Name: sn.Name, SizeBytes: sn.SizeBytes, Driver: sn.Driver, Version: sn.Version,
		ImageID: sn.ImageID, VCPUs: sn.VCPUs, MemoryMiB: sn.MemoryMiB, DiskMiB: sn.DiskMiB, CreatedAt: sn.CreatedAt}
}

func (d *Daemon) vmSnapshot(ctx context.Context, _ rpc.Caller, p api.VMSnapshotParams) (api.Snapshot, error) {
	sn, err := d.vms.Snapshot(ctx, p.Name, p.Snapshot)
	if err != nil {
		return api.Snapshot{}, err
	}
	v, err := d.vms.Get(ctx, sn.VMID)
	if err != nil {
		return api.Snapshot{}, err
	}
	return wireSnapshot(v, sn), nil
}

func (d *Daemon) vmSnapshotList(ctx context.Context, _ rpc.Caller, p api.VMRef) ([]api.Snapshot, error) {
	v, sns, err := d.vms.Snapshots(ctx, p.Name)
	if err != nil {
		return nil, err
	}
	out := make([]api.Snapshot, 0, len(sns))
	for _, sn := range sns {
		out = append(out, wireSnapshot(v, sn))
	}
	return out, nil
}

func (d *Daemon) vmSnapshotDelete(ctx context.Context, _ rpc.Caller, p api.VMSnapshotParams) (api.Empty, error) {
	return api.Empty{}, d.vms.DeleteSnapshot(ctx, p.Name, p.Snapshot)
}

func (d *Daemon) vmRestore(ctx context.Context, _ rpc.Caller, p api.VMSnapshotParams) (api.VM, error) {
	v, err := d.vms.Restore(ctx, p.Name, p.Snapshot)
	if err != nil {
		return api.VM{}, err
	}
	return d.wireVM(v), nil
}

func (d *Daemon) vmFork(ctx context.Context, _ rpc.Caller, p api.VMForkParams) ([]api.VM, error) {
	forks, err := d.vms.Fork(ctx, p.Name, p.New, p.Count)
	if err != nil {
		return nil, err
	}
	return d.wireVMs(forks), nil
}
