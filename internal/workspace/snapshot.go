package workspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Snapshot is the whole working state of a repository as git objects,
// made without writing to the repository: HEAD, the staged state and the
// working tree (tracked changes, deletions and untracked files that are not
// ignored), each as a commit on HEAD in banger's cache.
type Snapshot struct {
	Repo *Repo
	// Head is HEAD's commit, "" in a repository with no commits yet;
	// Branch is the current branch, "" when HEAD is detached.
	Head, Branch string
	Upstream     Upstream
	// UserName and UserEmail are the host's git identity, for the guest.
	UserName, UserEmail string
	// IndexCommit holds the staged tree, BaseCommit the working tree;
	// both have Head as their parent and fixed metadata, so the same state
	// always gives the same IDs.
	IndexCommit, IndexTree, BaseCommit, BaseTree string

	// What travels, for --dry-run and the free-space check.
	Files      int
	Bytes      int64
	Untracked  []string
	Secrets    []string
	Submodules []string
	LFS        bool

	tree []treeEntry // the working tree's entries, for the stream
}

// Upstream is the current branch's upstream, by name only: the remote's URL
// travels without credentials, and nothing else of the remote's config.
type Upstream struct {
	Remote, Merge, URL, Commit string
}

// snapshotEnv gives the fixed identity and dates of snapshot commits.
var snapshotEnv = []string{
	"GIT_AUTHOR_NAME=banger", "GIT_AUTHOR_EMAIL=banger@localhost", "GIT_AUTHOR_DATE=@0 +0000",
	"GIT_COMMITTER_NAME=banger", "GIT_COMMITTER_EMAIL=banger@localhost", "GIT_COMMITTER_DATE=@0 +0000",
}

// TakeSnapshot snapshots r's working state. excludes are git glob patterns
// (relative to the top) left out of what travels.
func TakeSnapshot(ctx context.Context, r *Repo, excludes []string) (*Snapshot, error) {
	s := &Snapshot{Repo: r}
	s.Head, _ = r.git(ctx, nil, "rev-parse", "-q", "--verify", "HEAD^{commit}")
	s.Branch, _ = r.git(ctx, nil, "symbolic-ref", "-q", "--short", "HEAD")
	s.UserName, _ = r.git(ctx, nil, "config", "user.name")
	s.UserEmail, _ = r.git(ctx, nil, "config", "user.email")
	if s.Branch != "" {
		s.Upstream = upstream(ctx, r, s.Branch)
	}
	if u, _ := r.git(ctx, nil, "ls-files", "-u"); u != "" {
		return nil, fmt.Errorf("%s has unresolved merge conflicts; resolve them (or `git merge --abort`) first", r.Top)
	}

	tmp, err := os.MkdirTemp("", "banger-snapshot-")
	if err != nil {
		return nil, fmt.Errorf("creating snapshot directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	index := filepath.Join(tmp, "index")
	if err := copyFile(filepath.Join(r.GitDir, "index"), index); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("copying the index: %w", err)
	}
	env := r.withCache("GIT_INDEX_FILE=" + index)
	if len(excludes) > 0 {
		args := []string{"rm", "-r", "-q", "--cached", "--ignore-unmatch", "--"}
		for _, e := range excludes {
			args = append(args, ":(top,glob)"+e)
		}
		if _, err := r.git(ctx, env, args...); err != nil {
			return nil, fmt.Errorf("applying --exclude: %w", err)
		}
	}
	if s.IndexTree, err = r.git(ctx, env, "write-tree"); err != nil {
		return nil, fmt.Errorf("writing the staged tree: %w", err)
	}
	add := []string{"add", "-A", "--", ":(top)"}
	for _, e := range excludes {
		add = append(add, ":(top,exclude,glob)"+e)
	}
	if _, err := r.git(ctx, env, add...); err != nil {
		return nil, fmt.Errorf("snapshotting the working tree: %w", err)
	}
	if s.BaseTree, err = r.git(ctx, env, "write-tree"); err != nil {
		return nil, fmt.Errorf("writing the working tree: %w", err)
	}
	if s.IndexCommit, err = snapshotCommit(ctx, r, s.IndexTree, s.Head, "banger workspace: staged"); err != nil {
		return nil, err
	}
	if s.BaseCommit, err = snapshotCommit(ctx, r, s.BaseTree, s.Head, "banger workspace: working tree"); err != nil {
		return nil, err
	}
	if err := s.describe(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func snapshotCommit(ctx context.Context, r *Repo, tree, parent, msg string) (string, error) {
	args := []string{"commit-tree", tree, "-m", msg}
	if parent != "" {
		args = append(args, "-p", parent)
	}
	c, err := r.git(ctx, r.withCache(snapshotEnv...), args...)
	if err != nil {
		return "", fmt.Errorf("writing a snapshot commit: %w", err)
	}
	return c, nil
}

func upstream(ctx context.Context, r *Repo, branch string) Upstream {
	var u Upstream
	u.Remote, _ = r.git(ctx, nil, "config", "branch."+branch+".remote")
	u.Merge, _ = r.git(ctx, nil, "config", "branch."+branch+".merge")
	if u.Remote == "" || u.Merge == "" || u.Remote == "." {
		return Upstream{}
	}
	raw, _ := r.git(ctx, nil, "config", "remote."+u.Remote+".url")
	u.URL = stripCredentials(raw)
	u.Commit, _ = r.git(ctx, nil, "rev-parse", "-q", "--verify", "refs/remotes/"+u.Remote+"/"+strings.TrimPrefix(u.Merge, "refs/heads/")+"^{commit}")
	return u
}

// stripCredentials drops user:password@ from a URL; scp-like addresses
// (git@host:path) keep their user, which is no secret.
func stripCredentials(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Scheme != "" && u.User != nil {
		u.User = nil
		return u.String()
	}
	return raw
}

// treeEntry is one entry of a recursive tree listing.
type treeEntry struct {
	mode     uint32
	typ, oid string
	size     int64 // blobs only, with long
	path     string
}

// lsTree lists a tree recursively; long adds blob sizes.
func (r *Repo) lsTree(ctx context.Context, tree string, long bool) ([]treeEntry, error) {
	args := []string{"ls-tree", "-r", "-z", "--full-tree", tree}
	if long {
		args = append(args, "--long")
	}
	out, err := r.gitRaw(ctx, r.withCache(), nil, args...)
	if err != nil {
		return nil, fmt.Errorf("listing the snapshot: %w", err)
	}
	var es []treeEntry
	for _, rec := range splitZ(out) {
		meta, name, ok := strings.Cut(rec, "\t")
		f := strings.Fields(meta)
		if !ok || len(f) < 3 {
			return nil, fmt.Errorf("listing the snapshot: unexpected line %q", rec)
		}
		m, err := strconv.ParseUint(f[0], 8, 32)
		if err != nil {
			return nil, fmt.Errorf("listing the snapshot: unexpected mode in %q", rec)
		}
		e := treeEntry{mode: uint32(m), typ: f[1], oid: f[2], path: name}
		if long && len(f) == 4 && e.typ == "blob" {
			e.size, _ = strconv.ParseInt(f[3], 10, 64)
		}
		es = append(es, e)
	}
	return es, nil
}

// describe counts what travels and notes what the user should know.
func (s *Snapshot) describe(ctx context.Context) error {
	r := s.Repo
	es, err := r.lsTree(ctx, s.BaseTree, true)
	if err != nil {
		return err
	}
	s.tree = es
	for _, e := range es {
		switch e.typ {
		case "commit":
			s.Submodules = append(s.Submodules, e.path)
			continue
		case "blob":
			s.Files++
			s.Bytes += e.size
		}
		if looksSecret(path.Base(e.path)) {
			s.Secrets = append(s.Secrets, e.path)
		}
		if path.Base(e.path) == ".gitattributes" && !s.LFS {
			b, _ := r.gitRaw(ctx, r.withCache(), nil, "cat-file", "blob", e.oid)
			s.LFS = strings.Contains(string(b), "filter=lfs")
		}
	}
	out, err := r.gitRaw(ctx, r.withCache(), nil, "diff-tree", "-r", "--no-renames", "--name-only", "-z", "--diff-filter=A", s.IndexTree, s.BaseTree)
	if err != nil {
		return fmt.Errorf("listing untracked files: %w", err)
	}
	s.Untracked = splitZ(out)
	return nil
}

// looksSecret is a name that usually holds credentials.
func looksSecret(base string) bool {
	switch {
	case base == ".env", strings.HasPrefix(base, ".env."),
		strings.HasSuffix(base, ".pem"), strings.HasSuffix(base, ".key"),
		strings.HasPrefix(base, "id_") && !strings.HasSuffix(base, ".pub"),
		base == ".netrc", base == ".npmrc", base == ".pypirc":
		return true
	}
	return false
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
