package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/banger-dev/banger/internal/model"
)

const wsColumns = `vm_id, path, repo, head, branch, index_commit, index_tree, base_commit, base_tree,
	readonly, export_branch, export_commit, prepared_at, exported_at`

func scanWorkspace(r rowScanner) (model.Workspace, error) {
	var (
		w                  model.Workspace
		prepared, exported string
	)
	err := r.Scan(&w.VMID, &w.Path, &w.Repo, &w.Head, &w.Branch, &w.IndexCommit, &w.IndexTree, &w.BaseCommit, &w.BaseTree,
		&w.ReadOnly, &w.ExportBranch, &w.ExportCommit, &prepared, &exported)
	w.PreparedAt = parseTime(prepared)
	if exported != "" {
		w.ExportedAt = parseTime(exported)
	}
	return w, err
}

// PutWorkspace inserts or replaces the record of a workspace. A VM that no
// longer exists is model.ErrNotFound.
func (s *Store) PutWorkspace(ctx context.Context, w model.Workspace) error {
	var exported string
	if !w.ExportedAt.IsZero() {
		exported = fmtTime(w.ExportedAt)
	}
	_, err := s.exec(ctx, `INSERT INTO workspaces (`+wsColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (vm_id, path) DO UPDATE SET repo = excluded.repo, head = excluded.head, branch = excluded.branch,
			index_commit = excluded.index_commit, index_tree = excluded.index_tree, base_commit = excluded.base_commit,
			base_tree = excluded.base_tree, readonly = excluded.readonly, export_branch = excluded.export_branch,
			export_commit = excluded.export_commit, prepared_at = excluded.prepared_at, exported_at = excluded.exported_at`,
		w.VMID, w.Path, w.Repo, w.Head, w.Branch, w.IndexCommit, w.IndexTree, w.BaseCommit, w.BaseTree,
		w.ReadOnly, w.ExportBranch, w.ExportCommit, fmtTime(w.PreparedAt), exported)
	if err != nil {
		if isForeignKey(err) {
			return model.Errorf(model.ErrNotFound, "vm %q not found", w.VMID)
		}
		return fmt.Errorf("recording workspace %s: %w", w.Path, err)
	}
	return nil
}

// GetWorkspace returns the record of the workspace at path in a VM.
func (s *Store) GetWorkspace(ctx context.Context, vmID, path string) (model.Workspace, error) {
	w, err := scanWorkspace(s.db.QueryRowContext(ctx, `SELECT `+wsColumns+` FROM workspaces WHERE vm_id = ? AND path = ?`, vmID, path))
	if errors.Is(err, sql.ErrNoRows) {
		return model.Workspace{}, model.Errorf(model.ErrNotFound, "no workspace was prepared at %s", path)
	}
	if err != nil {
		return model.Workspace{}, fmt.Errorf("reading workspace %s: %w", path, err)
	}
	return w, nil
}

// ListWorkspaces returns a VM's workspaces by path.
func (s *Store) ListWorkspaces(ctx context.Context, vmID string) ([]model.Workspace, error) {
	return queryAll(ctx, s.db, "workspaces", scanWorkspace, `SELECT `+wsColumns+` FROM workspaces WHERE vm_id = ? ORDER BY path`, vmID)
}
