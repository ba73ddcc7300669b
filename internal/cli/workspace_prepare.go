package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/workspace"
)

func (a *app) workspacePrepareCommand() *cobra.Command {
	var (
		guestPath string
		readOnly  bool
		force     bool
		dryRun    bool
		asJSON    bool
		excludes  []string
	)
	cmd := &cobra.Command{
		Use:   "prepare VM [REPO]",
		Short: "Copy a git repository's whole working state (history included) into a VM",
		Long: "Copies what `git status` shows into the VM: tracked files with their uncommitted\n" +
			"changes, the staged state, untracked files that are not ignored, and the history\n" +
			"(the repository's packs as they are), so git works offline in the guest. Hooks,\n" +
			"credentials, config includes, stashes and reflogs stay behind; the host repository\n" +
			"is never written. REPO defaults to the repository you are in.",
		Example: "  banger workspace prepare dev\n" +
			"  banger workspace prepare dev ~/src/app --path /work/app --readonly\n" +
			"  banger workspace prepare dev --dry-run",
		Args: func(cmd *cobra.Command, args []string) error {
			return rangeArgs(cmd, args, 1, 2, "a VM name and optionally a repository")
		},
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			t, err := a.openWorkspace(ctx, args, guestPath)
			if err != nil {
				return err
			}
			s, err := workspace.TakeSnapshot(ctx, t.repo, excludes)
			if err != nil {
				return err
			}
			plan, err := workspace.NewPlan(s)
			if err != nil {
				return err
			}
			if dryRun {
				return a.printPlan(t, plan, asJSON)
			}
			sc, err := a.dialWorkspace(ctx, t)
			if err != nil {
				return err
			}
			defer sc.Close()
			g := sshGuest{sc}
			var prev *workspace.Base
			if rec, err := t.client.WorkspaceShow(ctx, t.vm, t.path); err == nil {
				prev = toBase(rec)
			} else if !isNotFound(err) {
				return err
			}
			var rec api.Workspace
			opts := workspace.PrepareOptions{Path: t.path, ReadOnly: readOnly, Force: force, Previous: prev,
				// Recorded under the guest's lock, so the next prepare or
				// export on this VM compares against this one.
				Commit: func(b workspace.Base) error {
					var err error
					if rec, err = t.client.WorkspaceRecord(ctx, fromBase(t.vm, b, nil)); err != nil {
						return fmt.Errorf("recording the workspace (the guest has it, but export needs this record; prepare again): %w", err)
					}
					return nil
				}}
			if bar := a.byteBar(plan.StreamBytes(), "sending "+t.path); bar != nil && !asJSON {
				opts.Progress = func(sent, _ int64) { _ = bar.Set64(sent) }
				defer func() { _ = bar.Finish() }()
			}
			if _, err := workspace.Prepare(ctx, g, plan, opts); err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.streams.Out, rec)
			}
			fmt.Fprintf(a.streams.Out, "prepared %s in %s: %d files (%s), history %s, HEAD %s%s\n",
				t.path, t.vm, s.Files, bytesStr(s.Bytes), bytesStr(plan.ObjectBytes), short(s.Head), onBranch(s.Branch))
			a.planNotes(s)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&guestPath, "path", "", "directory in the guest (default /work/<repository directory name>)")
	f.BoolVar(&readOnly, "readonly", false, "make the tree read-only in the guest (a read-only bind mount, until the VM restarts)")
	f.BoolVar(&force, "force", false, "replace the guest's copy even if the guest changed it, or a directory banger did not make")
	f.BoolVar(&dryRun, "dry-run", false, "print what would travel and send nothing")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.StringArrayVar(&excludes, "exclude", nil, "leave out paths matching this git glob (repeatable), e.g. 'data/**'")
	return cmd
}

func onBranch(b string) string {
	if b == "" {
		return " (detached)"
	}
	return " on " + b
}

// planNotes says, on stderr, what the user should know about what went.
func (a *app) planNotes(s *workspace.Snapshot) {
	if len(s.Submodules) > 0 {
		fmt.Fprintf(a.streams.Err, "note: submodules travel as their gitlinks only: %s (run `git submodule update --init` in the guest if it can reach their remotes)\n", strings.Join(s.Submodules, ", "))
	}
	if s.LFS {
		fmt.Fprintln(a.streams.Err, "note: Git LFS files travel as pointer files; install git-lfs in the guest and run `git lfs pull` there to fetch their content")
	}
	if len(s.Secrets) > 0 {
		fmt.Fprintf(a.streams.Err, "note: these look like secrets and travel too (use --exclude to leave them out): %s\n", strings.Join(s.Secrets, ", "))
	}
}

func (a *app) printPlan(t *wsTarget, p *workspace.Plan, asJSON bool) error {
	s := p.Snapshot
	if asJSON {
		return printJSON(a.streams.Out, map[string]any{
			"vm": t.vm, "path": t.path, "repo": t.repo.Top, "head": s.Head, "branch": s.Branch,
			"files": s.Files, "bytes": s.Bytes, "history_bytes": p.ObjectBytes, "needed_bytes": p.Needed(),
			"untracked": nonNil(s.Untracked), "secrets": nonNil(s.Secrets), "submodules": nonNil(s.Submodules), "lfs": s.LFS,
		})
	}
	out := a.streams.Out
	fmt.Fprintf(out, "would prepare %s in %s from %s (HEAD %s%s)\n", t.path, t.vm, t.repo.Top, short(s.Head), onBranch(s.Branch))
	fmt.Fprintf(out, "files:     %d (%s)\nhistory:   %s\nneeds:     about %s in the guest\n", s.Files, bytesStr(s.Bytes), bytesStr(p.ObjectBytes), bytesStr(p.Needed()))
	fmt.Fprintf(out, "untracked: %d\n", len(s.Untracked))
	for _, u := range s.Untracked {
		fmt.Fprintf(out, "  %s\n", u)
	}
	if len(s.Secrets) > 0 {
		fmt.Fprintf(out, "look like secrets: %d\n", len(s.Secrets))
		for _, u := range s.Secrets {
			fmt.Fprintf(out, "  %s\n", u)
		}
	}
	a.planNotes(&workspace.Snapshot{Submodules: s.Submodules, LFS: s.LFS})
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
