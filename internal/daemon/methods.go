package daemon

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/rpc"
	"github.com/banger-dev/banger/internal/vm"
)

// methods is the method table: each RPC method, who may call it, and the
// service call behind it. Handlers only translate between wire and service
// types.
func (d *Daemon) methods() map[string]rpc.Method {
	member := func(h rpc.Handler) rpc.Method { return rpc.Method{Access: rpc.AccessMember, Handler: h} }
	return map[string]rpc.Method{
		api.MethodDaemonStatus:   member(rpc.Typed(d.status)),
		api.MethodDaemonShutdown: member(rpc.Typed(d.shutdownMethod)),
		api.MethodDaemonReload:   member(rpc.Typed(d.reloadMethod)),

		api.MethodVMCreate:  member(rpc.Typed(d.vmCreate)),
		api.MethodVMList:    member(rpc.Typed(d.vmList)),
		api.MethodVMShow:    member(rpc.Typed(d.vmShow)),
		api.MethodVMDelete:  member(rpc.Typed(d.vmDelete)),
		api.MethodVMStart:   member(rpc.Typed(d.vmLifecycle(d.vms.Start))),
		api.MethodVMStop:    member(rpc.Typed(d.vmLifecycle(d.vms.Stop))),
		api.MethodVMRestart: member(rpc.Typed(d.vmLifecycle(d.vms.Restart))),
		api.MethodVMSSHInfo: member(rpc.Typed(d.vmSSHInfo)),
		api.MethodVMTunnel:  {Access: rpc.AccessMember, Stream: d.vmTunnel},
		api.MethodVMLogs:    member(rpc.Typed(d.vmLogs)),
		api.MethodVMStats:   member(rpc.Typed(d.vmStats)),
		api.MethodVMSet:     member(rpc.Typed(d.vmSet)),

		api.MethodVMSnapshot:       member(rpc.Typed(d.vmSnapshot)),
		api.MethodVMSnapshotList:   member(rpc.Typed(d.vmSnapshotList)),
		api.MethodVMSnapshotDelete: member(rpc.Typed(d.vmSnapshotDelete)),
		api.MethodVMRestore:        member(rpc.Typed(d.vmRestore)),
		api.MethodVMFork:           member(rpc.Typed(d.vmFork)),

		api.MethodImageList:     member(rpc.Typed(d.imageList)),
		api.MethodImageShow:     member(rpc.Typed(d.imageShow)),
		api.MethodImageDelete:   member(rpc.Typed(d.imageDelete)),
		api.MethodImagePull:     member(rpc.Typed(d.imagePull)),
		api.MethodImageImport:   {Access: rpc.AccessMember, Stream: d.imageImport},
		api.MethodImagePrune:    member(rpc.Typed(d.imagePrune)),
		api.MethodImageCatalog:  member(rpc.Typed(d.imageCatalog)),
		api.MethodImageRegister: {Access: rpc.AccessMember, Stream: d.imageRegister},
		api.MethodImageLoad:     {Access: rpc.AccessMember, Stream: d.imageLoad},
		api.MethodImageExport:   {Access: rpc.AccessMember, Stream: d.imageExport},
		api.MethodImagePromote:  member(rpc.Typed(d.imagePromote)),

		api.MethodWorkspaceRecord: member(rpc.Typed(d.workspaceRecord)),
		api.MethodWorkspaceShow:   member(rpc.Typed(d.workspaceShow)),
		api.MethodWorkspaceList:   member(rpc.Typed(d.workspaceList)),

		api.MethodOpStatus: member(rpc.Typed(d.opStatus)),
		api.MethodOpCancel: member(rpc.Typed(d.opCancel)),
		api.MethodOpList:   member(rpc.Typed(d.opList)),
		api.MethodDoctor:   member(rpc.Typed(d.doctor)),
	}
}

func (d *Daemon) status(ctx context.Context, _ rpc.Caller, _ api.Empty) (api.DaemonStatus, error) {
	vms, err := d.vms.List(ctx)
	if err != nil {
		return api.DaemonStatus{}, err
	}
	running := 0
	for _, v := range vms {
		if v.State == model.StateRunning {
			running++
		}
	}
	driver, reason := d.driver, d.driverReason
	return api.DaemonStatus{
		Version: d.opts.Version, PID: os.Getpid(), UptimeSeconds: time.Since(d.started).Seconds(),
		Socket: d.opts.Socket, StateDir: d.layout.StateDir, Driver: driver.Name(), DriverReason: reason,
		VMs: len(vms), RunningVMs: running,
	}, nil
}

func (d *Daemon) shutdownMethod(ctx context.Context, c rpc.Caller, p api.DaemonShutdownParams) (api.Empty, error) {
	if p.Teardown {
		vms, err := d.vms.List(ctx)
		if err != nil {
			return api.Empty{}, err
		}
		var busy []string
		for _, v := range vms {
			if v.State == model.StateRunning || v.State.Transitional() {
				busy = append(busy, v.Name)
			}
		}
		if len(busy) > 0 {
			return api.Empty{}, model.Errorf(model.ErrState, "%d vm(s) still run (%s); stop them before removing banger's host networking", len(busy), strings.Join(busy, ", "))
		}
		d.teardown.Store(true)
	}
	d.log.Info("shutdown requested", "uid", c.UID, "pid", c.PID, "teardown", p.Teardown)
	// Answer first, then stop serving.
	time.AfterFunc(50*time.Millisecond, d.shutdown)
	return api.Empty{}, nil
}

func (d *Daemon) reloadMethod(context.Context, rpc.Caller, api.Empty) (api.DaemonReloadResult, error) {
	ch, err := d.Reload()
	if err != nil {
		return api.DaemonReloadResult{}, model.Errorf(model.ErrInvalid, "the config file was not reloaded, nothing changed: %v", err)
	}
	return api.DaemonReloadResult{Applied: nonNil(ch.Live), NeedRestart: nonNil(ch.Restart)}, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (d *Daemon) vmCreate(ctx context.Context, c rpc.Caller, p api.VMCreateParams) (api.VMCreateResult, error) {
	req := vm.CreateRequest{Name: p.Name, Image: p.Image, VCPUs: p.VCPUs, Memory: p.Memory, Disk: p.Disk, NoStart: p.NoStart, Cold: p.Cold, Publish: p.Publish, Network: p.Network}
	if p.AutoRemove {
		req.Session = c.Gone
	}
	v, o, err := d.vms.Create(d.life, req)
	if err != nil {
		return api.VMCreateResult{}, err
	}
	return api.VMCreateResult{VM: d.wireVM(v), Operation: wireOp(o), Warnings: d.vms.SpaceWarnings(v, d.config().OverlayMiB)}, nil
}

func (d *Daemon) vmSet(ctx context.Context, _ rpc.Caller, p api.VMSetParams) (api.VM, error) {
	v, err := d.vms.Set(ctx, p.Name, vm.SetRequest{VCPUs: p.VCPUs, Memory: p.Memory, Disk: p.Disk})
	if err != nil {
		return api.VM{}, err
	}
	return d.wireVM(v), nil
}

func (d *Daemon) vmList(ctx context.Context, _ rpc.Caller, _ api.Empty) ([]api.VM, error) {
	vms, err := d.vms.List(ctx)
	if err != nil {
		return nil, err
	}
	return d.wireVMs(vms), nil
}

// wireVMs is wireVM of each, never nil (an empty list is [] in JSON).
func (d *Daemon) wireVMs(vms []model.VM) []api.VM {
	out := make([]api.VM, 0, len(vms))
	for _, v := range vms {
		out = append(out, d.wireVM(v))
	}
	return out
}

func (d *Daemon) vmShow(ctx context.Context, _ rpc.Caller, p api.VMRef) (api.VM, error) {
	v, err := d.vms.Get(ctx, p.Name)
	if err != nil {
		return api.VM{}, err
	}
	return d.wireVM(v), nil
}

func (d *Daemon) vmDelete(ctx context.Context, _ rpc.Caller, p api.VMDeleteParams) (api.Empty, error) {
	return api.Empty{}, d.vms.Delete(ctx, p.Name, p.Force)
}

func (d *Daemon) vmLifecycle(f func(context.Context, string) (model.VM, error)) func(context.Context, rpc.Caller, api.VMRef) (api.VM, error) {
	return func(ctx context.Context, _ rpc.Caller, p api.VMRef) (api.VM, error) {
		v, err := f(ctx, p.Name)
		if err != nil {
			return api.VM{}, err
		}
		return d.wireVM(v), nil
	}
}

func (d *Daemon) opStatus(ctx context.Context, _ rpc.Caller, p api.OpRef) (api.Operation, error) {
	o, err := d.ops.Get(ctx, p.ID)
	if err != nil {
		return api.Operation{}, err
	}
	return wireOp(o), nil
}

func (d *Daemon) opCancel(ctx context.Context, _ rpc.Caller, p api.OpRef) (api.Operation, error) {
	o, err := d.ops.Cancel(ctx, p.ID)
	if err != nil {
		return api.Operation{}, err
	}
	return wireOp(o), nil
}

func (d *Daemon) opList(ctx context.Context, _ rpc.Caller, _ api.Empty) ([]api.Operation, error) {
	ops, err := d.ops.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Operation, 0, len(ops))
	for _, o := range ops {
		out = append(out, wireOp(o))
	}
	return out, nil
}

func (d *Daemon) wireVM(v model.VM) api.VM {
	return api.VM{
		ID: v.ID, Name: v.Name, State: string(v.State), Image: v.Image, ImageID: v.ImageID, VCPUs: v.VCPUs,
		MemoryMiB: v.MemoryMiB, DiskMiB: v.DiskMiB, IP: v.IP, MAC: v.MAC, Network: v.NetworkMode(), Driver: v.Driver,
		Dir: d.vms.Dir(v), LastError: v.LastError, CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt,
		AutoRemove: v.AutoRemove, Paused: d.vms.Paused(context.Background(), v),
		Publish: wirePorts(v.Publish),
	}
}

func wirePorts(maps []model.PortMap) []string {
	var out []string
	for _, p := range maps {
		out = append(out, fmt.Sprintf("127.0.0.1:%d->%d/%s", p.Host, p.Guest, p.Proto))
	}
	return out
}

func wireOp(o model.Operation) api.Operation {
	w := api.Operation{
		ID: o.ID, Kind: o.Kind, Target: o.Target, State: string(o.State), Phase: o.Phase,
		Done: o.Done, Total: o.Total, Error: o.Error, CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt,
	}
	for _, it := range o.Items {
		w.Items = append(w.Items, api.OpItem{Name: it.Name, Done: it.Done, Total: it.Total})
	}
	if !o.FinishedAt.IsZero() {
		f := o.FinishedAt
		w.FinishedAt = &f
	}
	return w
}
