package vm

import (
	"context"
	"time"

	"github.com/banger-dev/banger/internal/model"
)

// RecordWorkspace stores what a prepare or an export did to a VM's
// workspace. The record is all the daemon knows of it: the CLI does the
// git work as the invoking user, and the daemon never reads a repository.
func (s *Service) RecordWorkspace(ctx context.Context, ref string, w model.Workspace) (model.Workspace, error) {
	vm, err := s.store.GetVM(ctx, ref)
	if err != nil {
		return model.Workspace{}, err
	}
	w.VMID = vm.ID
	if err := model.ValidateWorkspace(w); err != nil {
		return model.Workspace{}, err
	}
	if w.PreparedAt.IsZero() {
		w.PreparedAt = time.Now().UTC()
	}
	if err := s.store.PutWorkspace(ctx, w); err != nil {
		return model.Workspace{}, err
	}
	return w, nil
}

// Workspace returns the record of the workspace at path in a VM.
func (s *Service) Workspace(ctx context.Context, ref, path string) (model.Workspace, error) {
	vm, err := s.store.GetVM(ctx, ref)
	if err != nil {
		return model.Workspace{}, err
	}
	if err := model.ValidateWorkspacePath(path); err != nil {
		return model.Workspace{}, err
	}
	w, err := s.store.GetWorkspace(ctx, vm.ID, path)
	if err != nil {
		return model.Workspace{}, model.Errorf(model.ErrNotFound, "vm %s has no workspace at %s; prepare one with `banger workspace prepare %s`", vm.Name, path, vm.Name)
	}
	return w, nil
}

// Workspaces lists a VM's workspaces.
func (s *Service) Workspaces(ctx context.Context, ref string) ([]model.Workspace, error) {
	vm, err := s.store.GetVM(ctx, ref)
	if err != nil {
		return nil, err
	}
	return s.store.ListWorkspaces(ctx, vm.ID)
}
