package workspace

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/banger-dev/banger/internal/host/run"
	"github.com/banger-dev/banger/internal/model"
)

// gitFlags go before every host-side git command: no hooks, no fsmonitor
// daemon, no index extensions written beside the repository's own files,
// and no automatic gc or maintenance, so that banger's git calls neither run
// programs the repository names nor write into it.
var gitFlags = []string{
	"-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false",
	"-c", "core.splitIndex=false", "-c", "core.untrackedCache=false",
	"-c", "gc.auto=0", "-c", "maintenance.auto=false",
}

// gitEnv keeps git from taking optional locks (a status refreshing the
// real index) and from ever prompting.
var gitEnv = []string{"GIT_OPTIONAL_LOCKS=0", "GIT_TERMINAL_PROMPT=0", "GIT_PAGER=cat", "LC_ALL=C"}

// Repo is a host repository as banger sees it.
type Repo struct {
	// Top is the working tree's top directory.
	Top string
	// GitDir is this worktree's git directory, CommonDir the repository's
	// (they differ for linked worktrees).
	GitDir, CommonDir string
	// Format is the object format ("sha1" or "sha256").
	Format string
	// Cache is banger's own object directory for this repository: the
	// snapshots prepare makes and the objects status fetches live there,
	// never in the repository.
	Cache string
}

// ErrNotRepo means a directory is not inside a git working tree.
var ErrNotRepo = errors.New("not a git repository")

// OpenRepo finds the repository dir is in, and banger's cache for it under
// cacheRoot (one object directory per repository, made on first use).
func OpenRepo(ctx context.Context, dir, cacheRoot string) (*Repo, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", dir, err)
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory: %w", dir, ErrNotRepo)
	}
	out, err := run.Output(ctx, append(append([]string{"git"}, gitFlags...),
		"rev-parse", "--is-inside-work-tree", "--show-toplevel", "--absolute-git-dir", "--git-common-dir", "--show-object-format"),
		run.Dir(abs), run.Env(gitEnv...))
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err != nil || len(lines) != 5 || lines[0] != "true" {
		return nil, fmt.Errorf("%s: %w (the repository must have a working tree); pass the repository's directory or cd into it", dir, ErrNotRepo)
	}
	r := &Repo{Top: lines[1], GitDir: lines[2], CommonDir: lines[3], Format: lines[4]}
	if !filepath.IsAbs(r.CommonDir) {
		r.CommonDir = filepath.Join(abs, r.CommonDir)
	}
	if pc, _ := r.git(ctx, nil, "config", "--get", "extensions.partialClone"); pc != "" {
		return nil, fmt.Errorf("%s is a partial clone (objects are missing locally); run `git fetch --refetch` or clone it fully first", r.Top)
	}
	sum := sha256.Sum256([]byte(r.CommonDir))
	r.Cache = filepath.Join(cacheRoot, hex.EncodeToString(sum[:8]), "objects")
	for _, d := range []string{r.Cache, filepath.Join(r.Cache, "pack"), filepath.Join(r.Cache, "info")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating workspace cache: %w", err)
		}
	}
	return r, nil
}

// Objects is the repository's own object directory.
func (r *Repo) Objects() string { return filepath.Join(r.CommonDir, "objects") }

// git runs a git command at the top of the working tree and returns its
// trimmed standard output. env adds variables.
func (r *Repo) git(ctx context.Context, env []string, args ...string) (string, error) {
	out, err := r.gitRaw(ctx, env, nil, args...)
	return strings.TrimSpace(string(out)), err
}

func (r *Repo) gitRaw(ctx context.Context, env []string, opts []run.Option, args ...string) ([]byte, error) {
	argv := append(append([]string{"git"}, gitFlags...), args...)
	opts = append([]run.Option{run.Dir(r.Top), run.Env(append(append([]string{}, gitEnv...), env...)...)}, opts...)
	return run.Output(ctx, argv, opts...)
}

// withCache is the environment in which git reads the repository's objects
// and banger's cached ones, and writes new objects to the cache only.
func (r *Repo) withCache(extra ...string) []string {
	return append([]string{"GIT_OBJECT_DIRECTORY=" + r.Cache, "GIT_ALTERNATE_OBJECT_DIRECTORIES=" + r.Objects()}, extra...)
}

// readsCache is the environment in which git reads both the repository's
// and banger's objects but writes to the repository (export to a branch).
func (r *Repo) readsCache() []string {
	return []string{"GIT_ALTERNATE_OBJECT_DIRECTORIES=" + r.Cache}
}

// zero is the object ID that means "no object" in the repository's format.
func (r *Repo) zero() string {
	if r.Format == "sha256" {
		return strings.Repeat("0", 64)
	}
	return strings.Repeat("0", 40)
}

// hasCommit reports whether oid names a commit the host can read.
func (r *Repo) hasCommit(ctx context.Context, oid string) bool {
	if !model.IsObjectID(oid) {
		return false
	}
	t, err := r.git(ctx, r.readsCache(), "cat-file", "-t", oid)
	return err == nil && t == "commit"
}

// splitZ splits NUL-terminated output.
func splitZ(b []byte) []string {
	var out []string
	for _, s := range strings.Split(string(b), "\x00") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// changedPaths lists the paths that differ between two trees (or commits).
// An empty "from" means the empty tree.
func (r *Repo) changedPaths(ctx context.Context, env []string, from, to string) ([]string, error) {
	if from == "" {
		from = r.emptyTree()
	}
	out, err := r.gitRaw(ctx, env, nil, "diff-tree", "-r", "--no-renames", "--name-only", "-z", from, to)
	if err != nil {
		return nil, fmt.Errorf("comparing trees: %w", err)
	}
	return splitZ(out), nil
}

func (r *Repo) emptyTree() string {
	if r.Format == "sha256" {
		return "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321"
	}
	return "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
}
