package cli

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/workspace"
)

func (a *app) workspaceExportCommand() *cobra.Command {
	var (
		guestPath string
		to        string
		message   string
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "export VM [REPO]",
		Short: "Bring the guest's work back: as commits on a branch, a patch series, or into the worktree",
		Long: "--to branch[:NAME] (default banger/<vm>): the guest's commits since prepare, and its\n" +
			"uncommitted work as one more commit, on a host branch; your current branch, index and\n" +
			"worktree are untouched, and a later export moves that branch only from where the last\n" +
			"one left it. --to patch[:FILE]: a format-patch series (stdout without FILE) that\n" +
			"`git am` applies. --to worktree: the guest's changes applied to your worktree, only if\n" +
			"your HEAD has not moved and you changed none of the same paths.\n" +
			"The host reads nothing from the guest but git objects, checked one by one, with hooks\n" +
			"off and never the guest's git config.",
		Example: "  banger workspace export dev\n" +
			"  banger workspace export dev --to patch:work.patch\n" +
			"  banger workspace export dev --to worktree",
		Args: func(cmd *cobra.Command, args []string) error {
			return rangeArgs(cmd, args, 1, 2, "a VM name and optionally a repository")
		},
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			mode, arg, _ := strings.Cut(to, ":")
			if mode != "branch" && mode != "patch" && mode != "worktree" || mode == "worktree" && arg != "" {
				return usagef(cmd, "--to must be branch[:NAME], patch[:FILE] or worktree, not %q", to)
			}
			t, err := a.openWorkspace(ctx, args, guestPath)
			if err != nil {
				return err
			}
			if message == "" {
				message = "work in progress from VM " + t.vm
			}
			// The guest-side lock is taken by the export script itself;
			// the branch moves only by compare-and-swap, so two exports
			// cannot both win.
			sc, base, err := a.prepared(ctx, t)
			if err != nil {
				return err
			}
			defer sc.Close()
			g := sshGuest{sc}
			opts := workspace.ExportOptions{Message: message}
			var res workspace.ExportResult
			switch mode {
			case "branch":
				opts.Branch = arg
				if opts.Branch == "" {
					opts.Branch = "banger/" + t.vm
				}
				res, err = workspace.ExportBranch(ctx, g, t.repo, base, opts)
				if err == nil {
					base.ExportBranch, base.ExportCommit = res.Branch, res.Commit
					now := time.Now().UTC()
					if _, rerr := t.client.WorkspaceRecord(ctx, fromBase(t.vm, *base, &now)); rerr != nil {
						return fmt.Errorf("branch %s is at %s, but recording that failed (the next export will refuse to move it): %w", res.Branch, res.Commit, rerr)
					}
				}
			case "patch":
				w := a.streams.Out
				var f *os.File
				if arg != "" && arg != "-" {
					if f, err = os.Create(arg); err != nil {
						return fmt.Errorf("creating patch file: %w", err)
					}
					w = f
				}
				opts.Patch = w
				res, err = workspace.ExportPatch(ctx, g, t.repo, base, opts)
				if f != nil {
					if cerr := f.Close(); err == nil && cerr != nil {
						err = fmt.Errorf("writing %s: %w", arg, cerr)
					}
					if err != nil {
						os.Remove(arg)
					}
				}
			case "worktree":
				res, err = workspace.ExportWorktree(ctx, g, t.repo, base, opts)
			}
			if err != nil {
				return err
			}
			if asJSON {
				if res.Files == nil {
					res.Files = []string{}
				}
				return printJSON(a.streams.Out, res)
			}
			switch {
			case mode == "branch" && res.Old == "":
				fmt.Fprintf(a.streams.Err, "created branch %s at %s: %d commit(s), %d file(s) changed\n", res.Branch, short(res.Commit), res.Commits, len(res.Files))
			case mode == "branch":
				fmt.Fprintf(a.streams.Err, "moved branch %s from %s to %s: %d commit(s), %d file(s) changed\n", res.Branch, short(res.Old), short(res.Commit), res.Commits, len(res.Files))
			case mode == "patch" && arg != "" && arg != "-":
				fmt.Fprintf(a.streams.Err, "wrote %d patch(es) to %s\n", res.Commits, arg)
			case mode == "worktree":
				fmt.Fprintf(a.streams.Err, "applied the guest's changes to %d file(s) in %s\n", len(res.Files), t.repo.Top)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&guestPath, "path", "", "the workspace's directory in the guest (default /work/<repository directory name>)")
	f.StringVar(&to, "to", "branch", "where the work goes: branch[:NAME], patch[:FILE] or worktree")
	f.StringVarP(&message, "message", "m", "", `message of the commit holding the guest's uncommitted work (default "work in progress from VM <name>")`)
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
