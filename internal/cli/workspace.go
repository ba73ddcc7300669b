package cli

import (
	"context"
	"io"
	"path"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/client"
	"github.com/banger-dev/banger/internal/guestssh"
	"github.com/banger-dev/banger/internal/workspace"
)

func (a *app) workspaceCommand() *cobra.Command {
	cmd := group("workspace", "Carry a git repository into a VM and the guest's work back out", "ws")
	cmd.AddCommand(a.workspacePrepareCommand(), a.workspaceExportCommand(), a.workspaceStatusCommand(), a.workspaceListCommand())
	return cmd
}

// wsTarget is one workspace command's repository, VM and guest path.
type wsTarget struct {
	vm     string
	repo   *workspace.Repo
	path   string
	client *client.Client
}

// openWorkspace resolves REPO (default: the repository the current
// directory is in) and the guest path (default /work/<repo-dir-name>).
// Host-side git runs here, as the invoking user.
func (a *app) openWorkspace(ctx context.Context, args []string, guestPath string) (*wsTarget, error) {
	dir := "."
	if len(args) > 1 {
		dir = args[1]
	}
	cache, err := workspace.CacheRoot()
	if err != nil {
		return nil, err
	}
	r, err := workspace.OpenRepo(ctx, dir, cache)
	if err != nil {
		return nil, err
	}
	if guestPath == "" {
		guestPath = path.Join("/work", filepath.Base(r.Top))
	}
	return &wsTarget{vm: args[0], repo: r, path: guestPath}, nil
}

// dial opens SSH to the target's VM (which must be running).
func (a *app) dialWorkspace(ctx context.Context, t *wsTarget) (*ssh.Client, error) {
	c, err := a.client(ctx)
	if err != nil {
		return nil, err
	}
	t.client = c
	info, err := c.VMSSHInfo(ctx, t.vm)
	if err != nil {
		return nil, err
	}
	return dialVM(ctx, c, t.vm, info)
}

// sshGuest runs workspace scripts over a VM's SSH connection.
type sshGuest struct{ c *ssh.Client }

func (g sshGuest) Exec(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	return guestssh.Run(ctx, g.c, shellQuote(argv), stdin, stdout, stderr)
}

func toBase(w api.Workspace) *workspace.Base {
	return &workspace.Base{
		Path: w.Path, Repo: w.Repo, Head: w.Head, Branch: w.Branch,
		IndexCommit: w.IndexCommit, IndexTree: w.IndexTree, BaseCommit: w.BaseCommit, BaseTree: w.BaseTree,
		ReadOnly: w.ReadOnly, ExportBranch: w.ExportBranch, ExportCommit: w.ExportCommit, PreparedAt: w.PreparedAt,
	}
}

func fromBase(vm string, b workspace.Base, exported *time.Time) api.Workspace {
	return api.Workspace{
		VM: vm, Path: b.Path, Repo: b.Repo, Head: b.Head, Branch: b.Branch,
		IndexCommit: b.IndexCommit, IndexTree: b.IndexTree, BaseCommit: b.BaseCommit, BaseTree: b.BaseTree,
		ReadOnly: b.ReadOnly, ExportBranch: b.ExportBranch, ExportCommit: b.ExportCommit,
		PreparedAt: b.PreparedAt, ExportedAt: exported,
	}
}

// prepared dials the target's VM and reads the daemon's record of the
// workspace: what export and status start from. The caller closes the
// returned connection.
func (a *app) prepared(ctx context.Context, t *wsTarget) (*ssh.Client, *workspace.Base, error) {
	sc, err := a.dialWorkspace(ctx, t)
	if err != nil {
		return nil, nil, err
	}
	rec, err := t.client.WorkspaceShow(ctx, t.vm, t.path)
	if err != nil {
		sc.Close()
		return nil, nil, err
	}
	b := toBase(rec)
	return sc, b, nil
}

func short(oid string) string {
	if len(oid) > 12 {
		return oid[:12]
	}
	if oid == "" {
		return "(none)"
	}
	return oid
}
