package daemon

import (
	"context"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/rpc"
)

func (d *Daemon) workspaceRecord(ctx context.Context, _ rpc.Caller, p api.Workspace) (api.Workspace, error) {
	w, err := d.vms.RecordWorkspace(ctx, p.VM, model.Workspace{
		Path: p.Path, Repo: p.Repo, Head: p.Head, Branch: p.Branch,
		IndexCommit: p.IndexCommit, IndexTree: p.IndexTree, BaseCommit: p.BaseCommit, BaseTree: p.BaseTree,
		ReadOnly: p.ReadOnly, ExportBranch: p.ExportBranch, ExportCommit: p.ExportCommit,
		PreparedAt: p.PreparedAt, ExportedAt: deref(p.ExportedAt),
	})
	if err != nil {
		return api.Workspace{}, err
	}
	return wireWorkspace(p.VM, w), nil
}

func (d *Daemon) workspaceShow(ctx context.Context, _ rpc.Caller, p api.WorkspaceRef) (api.Workspace, error) {
	w, err := d.vms.Workspace(ctx, p.VM, p.Path)
	if err != nil {
		return api.Workspace{}, err
	}
	return wireWorkspace(p.VM, w), nil
}

func (d *Daemon) workspaceList(ctx context.Context, _ rpc.Caller, p api.VMRef) ([]api.Workspace, error) {
	ws, err := d.vms.Workspaces(ctx, p.Name)
	if err != nil {
		return nil, err
	}
	out := make([]api.Workspace, 0, len(ws))
	for _, w := range ws {
		out = append(out, wireWorkspace(p.Name, w))
	}
	return out, nil
}

func wireWorkspace(vm string, w model.Workspace) api.Workspace {
	out := api.Workspace{
		VM: vm, Path: w.Path, Repo: w.Repo, Head: w.Head, Branch: w.Branch,
		IndexCommit: w.IndexCommit, IndexTree: w.IndexTree, BaseCommit: w.BaseCommit, BaseTree: w.BaseTree,
		ReadOnly: w.ReadOnly, ExportBranch: w.ExportBranch, ExportCommit: w.ExportCommit, PreparedAt: w.PreparedAt,
	}
	if !w.ExportedAt.IsZero() {
		t := w.ExportedAt
		out.ExportedAt = &t
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
