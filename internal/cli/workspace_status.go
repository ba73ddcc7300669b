package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/workspace"
)

// Exit codes of `workspace status`.
var statusExit = map[string]int{
	workspace.StateClean:   0,
	workspace.StateGuest:   3,
	workspace.StateHost:    4,
	workspace.StateBoth:    5,
	workspace.StateOverlap: 6,
}

func (a *app) workspaceStatusCommand() *cobra.Command {
	var (
		guestPath string
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "status VM [REPO]",
		Short: "Compare what prepare sent with the guest's and the host's state",
		Long: "Exit status: 0 nothing changed; 3 only the guest changed; 4 only the host drifted\n" +
			"(HEAD moved or files changed); 5 both changed, different paths; 6 both changed the\n" +
			"same paths (an export --to worktree would be refused); 1 error.",
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
			sc, base, err := a.prepared(ctx, t)
			if err != nil {
				return err
			}
			defer sc.Close()
			st, err := workspace.GetStatus(ctx, sshGuest{sc}, t.repo, base)
			if err != nil {
				return err
			}
			if asJSON {
				st.GuestFiles, st.HostFiles, st.Overlap = nonNil(st.GuestFiles), nonNil(st.HostFiles), nonNil(st.Overlap)
				if err := printJSON(a.streams.Out, st); err != nil {
					return err
				}
			} else {
				out := a.streams.Out
				fmt.Fprintf(out, "workspace %s in %s, from %s\n", st.Path, t.vm, st.Repo)
				fmt.Fprintf(out, "base:    HEAD %s\n", short(st.BaseHead))
				fmt.Fprintf(out, "guest:   %d commit(s) ahead, %d file(s) changed%s\n", st.GuestAhead, len(st.GuestFiles), list(st.GuestFiles))
				moved := "HEAD unchanged"
				if st.HostMoved {
					moved = "HEAD moved to " + short(st.HostHead)
				}
				fmt.Fprintf(out, "host:    %s, %d file(s) changed%s\n", moved, len(st.HostFiles), list(st.HostFiles))
				fmt.Fprintf(out, "overlap: %d file(s)%s\n", len(st.Overlap), list(st.Overlap))
			}
			if code := statusExit[st.State]; code != 0 {
				return exitCodeError{code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&guestPath, "path", "", "the workspace's directory in the guest (default /work/<repository directory name>)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func list(paths []string) string {
	if len(paths) == 0 {
		return ""
	}
	shown := paths
	if len(shown) > 10 {
		shown = shown[:10]
	}
	s := ": " + strings.Join(shown, ", ")
	if len(paths) > len(shown) {
		s += fmt.Sprintf(", and %d more", len(paths)-len(shown))
	}
	return s
}
