package workspace

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/banger-dev/banger/internal/host/run"
	"github.com/banger-dev/banger/internal/model"
)

// maxPack bounds what a guest may send back: a guest must not be able to
// fill the host's disk.
const maxPack = 16 << 30

// Guest work as the host sees it after a fetch: objects only, checked.
type fetched struct {
	// Head is the guest's HEAD commit ("" when it has none); WIP is HEAD
	// plus the guest's uncommitted work (HEAD itself when there is none).
	Head, WIP, WIPTree string
}

// fetch makes the guest snapshot its working state and send back the
// objects the host lacks, as a pack that git checks object by object
// (index-pack --strict) on the way in. into says where the objects go: the
// repository (export to a branch) or banger's cache (everything else). The
// host reads nothing from the guest but this pack and two object IDs.
func fetch(ctx context.Context, g Guest, r *Repo, b *Base, msg string, intoRepo bool) (fetched, error) {
	// The base commits are in banger's cache unless it was cleaned.
	needBase := flag(!r.hasCommit(ctx, b.BaseCommit) || !r.hasCommit(ctx, b.IndexCommit))
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		// The lock covers the snapshot and the pack: one session, no lease.
		err := runScript(ctx, g, lockWrap, []string{LockPath, exportScript, "banger-workspace", b.Path, msg, b.Head, b.BaseCommit, b.IndexCommit, needBase}, nil, pw)
		pw.CloseWithError(io.EOF)
		errc <- err
	}()
	br := bufio.NewReaderSize(&limitedReader{r: pr, n: maxPack}, 64<<10)
	line, lerr := br.ReadString('\n')
	var f fetched
	if lerr == nil {
		fields := strings.Fields(line)
		if len(fields) == 3 && fields[0] == "banger-export" && (fields[1] == "none" || model.IsObjectID(fields[1])) && model.IsObjectID(fields[2]) {
			f.Head, f.WIP = strings.TrimPrefix(fields[1], "none"), fields[2]
		} else {
			lerr = errors.New("the guest's answer is malformed")
		}
	}
	if lerr != nil {
		pr.CloseWithError(lerr)
		if err := <-errc; err != nil {
			var ge *GuestError
			if errors.As(err, &ge) && ge.Code == exitNoWorkspace {
				return fetched{}, fmt.Errorf("there is no workspace at %s in the guest (was it deleted?); prepare it again", b.Path)
			}
			if errors.As(err, &ge) && ge.Code == exitNoGit {
				return fetched{}, errors.New("the guest has no git; install it in the VM")
			}
			return fetched{}, fmt.Errorf("snapshotting the guest's work: %w", err)
		}
		return fetched{}, fmt.Errorf("snapshotting the guest's work: %w", lerr)
	}
	env := r.withCache()
	if intoRepo {
		env = r.readsCache()
	}
	_, ierr := r.gitRaw(ctx, env, []run.Option{run.Stdin(br)}, "index-pack", "--stdin", "--strict")
	pr.CloseWithError(io.ErrClosedPipe)
	gerr := <-errc
	if ierr != nil {
		return fetched{}, fmt.Errorf("receiving the guest's objects (git checks every object, and refused these): %w", ierr)
	}
	if gerr != nil {
		return fetched{}, fmt.Errorf("snapshotting the guest's work: %w", gerr)
	}
	for _, c := range []string{f.WIP, b.BaseCommit} {
		if !r.hasCommit(ctx, c) {
			return fetched{}, fmt.Errorf("the guest did not send commit %s; is this the repository the workspace was prepared from (%s)?", c, b.Repo)
		}
	}
	if f.Head != "" && !r.hasCommit(ctx, f.Head) {
		return fetched{}, fmt.Errorf("the guest did not send its HEAD %s", f.Head)
	}
	t, err := r.git(ctx, r.readsCache(), "rev-parse", f.WIP+"^{tree}")
	if err != nil {
		return fetched{}, fmt.Errorf("reading the guest's tree: %w", err)
	}
	f.WIPTree = t
	return f, nil
}

type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, fmt.Errorf("the guest sent more than %s", human(maxPack))
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// ExportOptions say where the guest's work goes.
type ExportOptions struct {
	// Message is the commit message of the guest's uncommitted work.
	Message string
	// Branch is the host branch for --to branch (default banger/<vm>).
	Branch string
	// Patch receives a format-patch series for --to patch.
	Patch io.Writer
}

// ExportResult says what an export did.
type ExportResult struct {
	Branch  string   `json:"branch,omitempty"`
	Commit  string   `json:"commit"`
	Old     string   `json:"old,omitempty"`
	Commits int      `json:"commits"`
	Files   []string `json:"files"`
}

// ErrRefused means an export would clobber host-side work and did nothing.
var ErrRefused = errors.New("export refused")

// ExportBranch brings the guest's commits and its uncommitted work (one
// more commit) back onto a host branch, moving it only from where the last
// export left it (compare-and-swap). The current branch, index and
// worktree are untouched.
func ExportBranch(ctx context.Context, g Guest, r *Repo, b *Base, o ExportOptions) (ExportResult, error) {
	ref := "refs/heads/" + o.Branch
	if _, err := r.git(ctx, nil, "check-ref-format", ref); err != nil || strings.HasPrefix(o.Branch, "-") {
		return ExportResult{}, fmt.Errorf("%q is not a valid branch name", o.Branch)
	}
	if cur, _ := r.git(ctx, nil, "symbolic-ref", "-q", "HEAD"); cur == ref {
		return ExportResult{}, fmt.Errorf("%w: %s is checked out on the host; moving it would desynchronise your worktree; check out another branch or use --to branch:OTHER", ErrRefused, o.Branch)
	}
	old, _ := r.git(ctx, nil, "rev-parse", "-q", "--verify", ref)
	if old != "" && (b.ExportBranch != o.Branch || old != b.ExportCommit) {
		left := "no export of this workspace made it"
		if b.ExportBranch == o.Branch && b.ExportCommit != "" {
			left = "the last export left it at " + b.ExportCommit
		}
		return ExportResult{}, fmt.Errorf("%w: branch %s points at %s, but %s; it moved on the host, so export to another branch (--to branch:NAME) or delete it first", ErrRefused, o.Branch, old, left)
	}
	f, err := fetch(ctx, g, r, b, o.Message, true)
	if err != nil {
		return ExportResult{}, err
	}
	expect := old
	if expect == "" {
		expect = r.zero()
	}
	if _, err := r.git(ctx, r.readsCache(), "update-ref", "-m", "banger workspace export", ref, f.WIP, expect); err != nil {
		now, _ := r.git(ctx, nil, "rev-parse", "-q", "--verify", ref)
		return ExportResult{}, fmt.Errorf("%w: branch %s moved during the export (now %q, expected %q): %w", ErrRefused, o.Branch, now, old, err)
	}
	res := ExportResult{Branch: o.Branch, Commit: f.WIP, Old: old}
	res.Commits = countCommits(ctx, r, b.Head, f.WIP)
	res.Files, _ = r.changedPaths(ctx, r.readsCache(), b.BaseTree, f.WIPTree)
	return res, nil
}

// ExportPatch writes the guest's commits and uncommitted work as a
// binary-safe format-patch series relative to the HEAD prepare sent, which
// `git am` applies to a clone at that commit. The repository is not written.
func ExportPatch(ctx context.Context, g Guest, r *Repo, b *Base, o ExportOptions) (ExportResult, error) {
	f, err := fetch(ctx, g, r, b, o.Message, false)
	if err != nil {
		return ExportResult{}, err
	}
	args := []string{"format-patch", "--stdout", "--binary", "--no-signature", "--no-stat"}
	if b.Head == "" {
		args = append(args, "--root", f.WIP)
	} else {
		args = append(args, b.Head+".."+f.WIP)
	}
	if _, err := r.gitRaw(ctx, r.withCache(), []run.Option{run.Stdout(o.Patch)}, args...); err != nil {
		return ExportResult{}, fmt.Errorf("writing the patch series: %w", err)
	}
	res := ExportResult{Commit: f.WIP, Commits: countCommits(ctx, r, b.Head, f.WIP)}
	res.Files, _ = r.changedPaths(ctx, r.withCache(), b.BaseTree, f.WIPTree)
	return res, nil
}

// OverlapError lists the paths both sides changed.
type OverlapError struct{ Paths []string }

func (e *OverlapError) Error() string {
	shown := e.Paths
	if len(shown) > 20 {
		shown = shown[:20]
	}
	return fmt.Sprintf("%v: the host changed %d path(s) the guest also changed since prepare: %s; nothing was changed; use --to branch and merge",
		ErrRefused, len(e.Paths), strings.Join(shown, ", "))
}

func (e *OverlapError) Unwrap() error { return ErrRefused }

// ExportWorktree applies the guest's changes since prepare to the host's
// working tree, only when the host has not drifted: HEAD is where prepare
// found it, and no path the host changed since is one the guest changed.
// Otherwise it changes nothing.
func ExportWorktree(ctx context.Context, g Guest, r *Repo, b *Base, o ExportOptions) (ExportResult, error) {
	head, _ := r.git(ctx, nil, "rev-parse", "-q", "--verify", "HEAD^{commit}")
	if head != b.Head {
		return ExportResult{}, fmt.Errorf("%w: the host's HEAD moved from %s to %s since prepare; use --to branch and merge", ErrRefused, orNone(b.Head), orNone(head))
	}
	hs, err := TakeSnapshot(ctx, r, nil)
	if err != nil {
		return ExportResult{}, err
	}
	f, err := fetch(ctx, g, r, b, o.Message, false)
	if err != nil {
		return ExportResult{}, err
	}
	hostChanged, err := r.changedPaths(ctx, r.withCache(), b.BaseTree, hs.BaseTree)
	if err != nil {
		return ExportResult{}, err
	}
	guestChanged, err := r.changedPaths(ctx, r.withCache(), b.BaseTree, f.WIPTree)
	if err != nil {
		return ExportResult{}, err
	}
	if both := intersect(hostChanged, guestChanged); len(both) > 0 {
		return ExportResult{}, &OverlapError{Paths: both}
	}
	res := ExportResult{Commit: f.WIP, Files: guestChanged, Commits: countCommits(ctx, r, b.Head, f.WIP)}
	if len(guestChanged) == 0 {
		return res, nil
	}
	diff, err := r.gitRaw(ctx, r.withCache(), nil, "diff", "--binary", "--full-index", "--no-renames", "--no-ext-diff", "--no-textconv", b.BaseTree, f.WIPTree)
	if err != nil {
		return ExportResult{}, fmt.Errorf("computing the guest's changes: %w", err)
	}
	// git apply refuses paths outside the worktree, inside .git, or beyond
	// a symlink, so a guest cannot write elsewhere on the host.
	if _, err := r.gitRaw(ctx, r.withCache(), []run.Option{run.Stdin(strings.NewReader(string(diff)))}, "apply", "--whitespace=nowarn", "-"); err != nil {
		return ExportResult{}, fmt.Errorf("applying the guest's changes to the worktree: %w", err)
	}
	return res, nil
}

// Status compares what prepare sent with the guest's and the host's state.
type Status struct {
	Path        string   `json:"path"`
	Repo        string   `json:"repo"`
	BaseHead    string   `json:"base_head"`
	GuestHead   string   `json:"guest_head"`
	GuestAhead  int      `json:"guest_commits_ahead"`
	GuestFiles  []string `json:"guest_files_changed"`
	HostHead    string   `json:"host_head"`
	HostMoved   bool     `json:"host_head_moved"`
	HostFiles   []string `json:"host_files_changed"`
	Overlap     []string `json:"overlap"`
	State       string   `json:"state"`
	ReadOnly    bool     `json:"readonly"`
	LastExport  string   `json:"last_export,omitempty"`
	ExportedRef string   `json:"exported_branch,omitempty"`
}

// Status states, and the CLI's exit codes for them.
const (
	StateClean   = "clean"   // 0
	StateGuest   = "guest"   // 3: only the guest changed
	StateHost    = "host"    // 4: only the host drifted
	StateBoth    = "both"    // 5: both changed, different paths
	StateOverlap = "overlap" // 6: both changed the same paths
)

// GetStatus fetches the guest's state into banger's cache and compares.
func GetStatus(ctx context.Context, g Guest, r *Repo, b *Base) (Status, error) {
	f, err := fetch(ctx, g, r, b, "banger workspace status", false)
	if err != nil {
		return Status{}, err
	}
	hs, err := TakeSnapshot(ctx, r, nil)
	if err != nil {
		return Status{}, err
	}
	st := Status{Path: b.Path, Repo: b.Repo, BaseHead: b.Head, GuestHead: f.Head, HostHead: hs.Head,
		HostMoved: hs.Head != b.Head, ReadOnly: b.ReadOnly, LastExport: b.ExportCommit, ExportedRef: b.ExportBranch}
	st.GuestAhead = countCommits(ctx, r, b.Head, f.Head)
	if st.GuestFiles, err = r.changedPaths(ctx, r.withCache(), b.BaseTree, f.WIPTree); err != nil {
		return Status{}, err
	}
	if st.HostFiles, err = r.changedPaths(ctx, r.withCache(), b.BaseTree, hs.BaseTree); err != nil {
		return Status{}, err
	}
	st.Overlap = intersect(st.HostFiles, st.GuestFiles)
	guest := st.GuestAhead > 0 || len(st.GuestFiles) > 0
	host := st.HostMoved || len(st.HostFiles) > 0
	switch {
	case len(st.Overlap) > 0:
		st.State = StateOverlap
	case guest && host:
		st.State = StateBoth
	case guest:
		st.State = StateGuest
	case host:
		st.State = StateHost
	default:
		st.State = StateClean
	}
	return st, nil
}

func countCommits(ctx context.Context, r *Repo, from, to string) int {
	if to == "" {
		return 0
	}
	rng := to
	if from != "" {
		rng = from + ".." + to
	}
	out, err := r.git(ctx, r.withCache(), "rev-list", "--count", rng)
	if err != nil {
		return 0
	}
	var n int
	_, _ = fmt.Sscan(out, &n)
	return n
}

// intersect lists the paths of a that b also touches: the same path, or
// one inside a directory the other names (a file on one side where the
// other has a directory of files).
func intersect(a, b []string) []string {
	var out []string
	for _, p := range a {
		if slices.ContainsFunc(b, func(q string) bool {
			return p == q || strings.HasPrefix(q, p+"/") || strings.HasPrefix(p, q+"/")
		}) {
			out = append(out, p)
		}
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "(no commit)"
	}
	return s
}

// CacheRoot is where banger keeps its per-repository object caches for
// the invoking user.
func CacheRoot() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the cache directory: %w", err)
	}
	return filepath.Join(d, "banger", "workspaces"), nil
}
