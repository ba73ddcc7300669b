package workspace

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/wsstream"
)

// TestMain lets the test binary stand in for the guest agent: the receive
// script runs it as `AGENT workspace-unpack ...`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == wsstream.Command {
		if err := wsstream.Main(context.Background(), os.Args[2:], os.Stdin); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// localGuest runs the guest scripts with the local shell, with /work and
// /run/banger mapped into a temporary directory, and mount commands
// stubbed (read-only bind mounts need root; the e2e tests check them).
type localGuest struct {
	root string
	env  []string
}

func newLocalGuest(t *testing.T) *localGuest {
	t.Helper()
	root := t.TempDir()
	bin := filepath.Join(root, "bin")
	for _, d := range []string{bin, filepath.Join(root, "work"), filepath.Join(root, "home")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{"mount": "exit 0", "umount": "exit 0", "mountpoint": "exit 1"} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &localGuest{root: root, env: []string{
		"PATH=" + bin + ":" + os.Getenv("PATH"), "HOME=" + filepath.Join(root, "home"),
		"GIT_CONFIG_NOSYSTEM=1", "LC_ALL=C",
	}}
}

func (g *localGuest) path(p string) string {
	for _, pre := range []string{"/work", "/run/banger"} {
		if p == pre || strings.HasPrefix(p, pre+"/") {
			return filepath.Join(g.root, p)
		}
	}
	return p
}

func (g *localGuest) Exec(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	args := make([]string, len(argv))
	for i, a := range argv {
		args[i] = g.path(a)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = g.env
	// As over SSH, the command's end ends Exec even while stdin is open.
	cmd.Stdout, cmd.Stderr = stdout, stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return -1, err
	}
	if err := cmd.Start(); err != nil {
		return -1, err
	}
	if stdin != nil {
		go func() { _, _ = io.Copy(in, stdin); in.Close() }()
	} else {
		in.Close()
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

// sh runs a shell command in the guest directory for checks.
func (g *localGuest) sh(t *testing.T, dir, script string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = g.path(dir)
	cmd.Env = g.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("guest %q: %v\n%s", script, err, out)
	}
	return string(out)
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+filepath.Dir(dir), "LC_ALL=C",
		"GIT_AUTHOR_DATE=@1700000000 +0000", "GIT_COMMITTER_DATE=@1700000000 +0000")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// hostRepo makes a repository with every file state a prepare must carry.
func hostRepo(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	dir := filepath.Join(home, "my app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(home, ".gitconfig"), "[user]\n\tname = Host User\n\temail = host@example.com\n[init]\n\tdefaultBranch = main\n", 0o644)
	git(t, dir, "init", "-q")
	write(t, filepath.Join(dir, ".gitignore"), "*.log\nbuild/\n", 0o644)
	write(t, filepath.Join(dir, "staged.txt"), "one\n", 0o644)
	write(t, filepath.Join(dir, "unstaged.txt"), "one\n", 0o644)
	write(t, filepath.Join(dir, "both.txt"), "one\n", 0o644)
	write(t, filepath.Join(dir, "deleted.txt"), "gone\n", 0o644)
	write(t, filepath.Join(dir, "staged-deleted.txt"), "gone\n", 0o644)
	write(t, filepath.Join(dir, "renamed-from.txt"), "move me\n", 0o644)
	write(t, filepath.Join(dir, "script.sh"), "#!/bin/sh\necho hi\n", 0o644)
	write(t, filepath.Join(dir, "bin.dat"), "\x00\x01\x02binary\xff", 0o644)
	write(t, filepath.Join(dir, "sub dir", "ünïcode name.txt"), "u\n", 0o644)
	write(t, filepath.Join(dir, "empty"), "", 0o644)
	if err := os.Symlink("staged.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-q", "-m", "first")
	git(t, dir, "remote", "add", "origin", "https://user:s3cret@example.com/app.git")
	git(t, dir, "update-ref", "refs/remotes/origin/main", "HEAD")
	git(t, dir, "config", "branch.main.remote", "origin")
	git(t, dir, "config", "branch.main.merge", "refs/heads/main")
	git(t, dir, "commit", "-q", "--allow-empty", "-m", "second")
	git(t, dir, "gc", "-q") // history in a pack with its index
	git(t, dir, "commit", "-q", "--allow-empty", "-m", "third (loose)")
	// A stash must not travel as a ref.
	write(t, filepath.Join(dir, "unstaged.txt"), "stashed\n", 0o644)
	git(t, dir, "stash", "-q")

	write(t, filepath.Join(dir, "staged.txt"), "two\n", 0o644)
	git(t, dir, "add", "staged.txt")
	write(t, filepath.Join(dir, "unstaged.txt"), "two\n", 0o644)
	write(t, filepath.Join(dir, "both.txt"), "two\n", 0o644)
	git(t, dir, "add", "both.txt")
	write(t, filepath.Join(dir, "both.txt"), "three\n", 0o644)
	os.Remove(filepath.Join(dir, "deleted.txt"))
	git(t, dir, "rm", "-q", "staged-deleted.txt")
	git(t, dir, "mv", "renamed-from.txt", "renamed-to.txt")
	if err := os.Chmod(filepath.Join(dir, "script.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "untracked.txt"), "new\n", 0o644)
	write(t, filepath.Join(dir, "untracked empty"), "", 0o644)
	write(t, filepath.Join(dir, "debug.log"), "ignored\n", 0o644)
	write(t, filepath.Join(dir, "build", "out.o"), "ignored\n", 0o644)
	write(t, filepath.Join(dir, ".env"), "TOKEN=x\n", 0o644)
	// A submodule travels as its gitlink.
	subrepo := filepath.Join(home, "subrepo")
	if err := os.MkdirAll(subrepo, 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, subrepo, "init", "-q")
	git(t, subrepo, "commit", "-q", "--allow-empty", "-m", "sub")
	git(t, dir, "-c", "protocol.file.allow=always", "submodule", "add", "-q", subrepo, "vendor/sub")
	// A hook that must never run on the host.
	write(t, filepath.Join(dir, ".git", "hooks", "post-checkout"), "#!/bin/sh\ntouch "+filepath.Join(home, "HOOK-RAN")+"\n", 0o755)
	t.Setenv("HOME", home)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	return dir
}

// treeDigest fingerprints every file under dir: path, mode, content.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		line := rel + " " + fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line += " " + hex.EncodeToString(sum[:])
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func prepare(t *testing.T, g Guest, dir, guestPath string, prev *Base, force bool) (Base, error) {
	t.Helper()
	return Prepare(context.Background(), g, plan(t, dir), PrepareOptions{Path: guestPath, Previous: prev, Force: force, Agent: testAgent(t)})
}

// plan snapshots the repository at dir and lists what a prepare sends.
func plan(t *testing.T, dir string) *Plan {
	t.Helper()
	ctx := context.Background()
	r, err := OpenRepo(ctx, dir, filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := TakeSnapshot(ctx, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func porcelain(t *testing.T, run func(string) string) string {
	return run("git status --porcelain=v1 --untracked-files=all --ignore-submodules=none")
}

func TestPrepareCarriesEveryFileStateAndWritesNothing(t *testing.T) {
	dir := hostRepo(t)
	before := treeDigest(t, filepath.Join(dir, ".git"))
	g := newLocalGuest(t)
	base, err := prepare(t, g, dir, "/work/app", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if after := treeDigest(t, filepath.Join(dir, ".git")); after != before {
		t.Fatalf("prepare wrote to the host .git")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "HOOK-RAN")); err == nil {
		t.Fatal("a host hook ran")
	}
	hostStatus := porcelain(t, func(s string) string {
		return git(t, dir, "-c", "status.relativePaths=false", "status", "--porcelain=v1", "--untracked-files=all")
	})
	guestStatus := porcelain(t, func(s string) string { return g.sh(t, "/work/app", s) })
	// The submodule's own work tree is not carried: the gitlink is, so the
	// guest sees the submodule directory as empty (not initialised).
	if hostStatus != guestStatus {
		t.Fatalf("git status differs\nhost:\n%s\nguest:\n%s", hostStatus, guestStatus)
	}
	if h, gs := git(t, dir, "diff", "--cached"), g.sh(t, "/work/app", "git diff --cached"); h != gs {
		t.Fatalf("staged diff differs\nhost:\n%s\nguest:\n%s", h, gs)
	}
	if h, gs := git(t, dir, "diff"), g.sh(t, "/work/app", "git diff"); h != gs {
		t.Fatalf("unstaged diff differs\nhost:\n%s\nguest:\n%s", h, gs)
	}
	for _, c := range []struct{ cmd, want string }{
		{"git log --format=%s", "third (loose)\nsecond\nfirst\n"},
		{"git rev-parse --abbrev-ref HEAD", "main\n"},
		{"git rev-parse --abbrev-ref @{u}", "origin/main\n"},
		{"git config remote.origin.url", "https://example.com/app.git\n"},
		{"git config user.email", "host@example.com\n"},
		{"git stash list | wc -l", "0\n"},
		{"test -x script.sh && readlink link && cat empty && echo ok", "staged.txt\nok\n"},
		{"test ! -e debug.log && test ! -e build && echo ignored-stayed", "ignored-stayed\n"},
		{"ls .git/hooks 2>/dev/null | grep -v sample | wc -l", "0\n"},
		{"git fsck --no-dangling 2>&1 | grep -v '^Checking' | wc -l", "0\n"},
	} {
		if got := g.sh(t, "/work/app", c.cmd); got != c.want {
			t.Errorf("guest %q = %q, want %q", c.cmd, got, c.want)
		}
	}
	if base.Head == "" || base.BaseTree == "" || base.Branch != "main" {
		t.Fatalf("base %+v", base)
	}

	// Unchanged guest: prepare again updates in place. Changed guest: refused.
	write(t, filepath.Join(dir, "untracked.txt"), "newer\n", 0o644)
	base2, err := prepare(t, g, dir, "/work/app", &base, false)
	if err != nil {
		t.Fatalf("re-prepare of an unchanged workspace: %v", err)
	}
	if got := g.sh(t, "/work/app", "cat untracked.txt"); got != "newer\n" {
		t.Fatalf("re-prepare did not update: %q", got)
	}
	g.sh(t, "/work/app", "echo guest >> staged.txt")
	if _, err := prepare(t, g, dir, "/work/app", &base2, false); !errors.Is(err, ErrGuestChanged) {
		t.Fatalf("prepare over guest changes: %v, want ErrGuestChanged", err)
	}
	if got := g.sh(t, "/work/app", "tail -1 staged.txt"); got != "guest\n" {
		t.Fatal("a refused prepare changed the guest")
	}
	if _, err := prepare(t, g, dir, "/work/app", &base2, true); err != nil {
		t.Fatalf("prepare --force: %v", err)
	}
	// A directory banger did not make is not replaced without --force.
	g.sh(t, "/work", "mkdir -p other && echo mine > other/file")
	if _, err := prepare(t, g, dir, "/work/other", nil, false); err == nil || !strings.Contains(err.Error(), "not a workspace banger prepared") {
		t.Fatalf("prepare over a foreign directory: %v", err)
	}
}

func TestSnapshotDescribes(t *testing.T) {
	dir := hostRepo(t)
	r, err := OpenRepo(context.Background(), dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := TakeSnapshot(context.Background(), r, []string{"*.dat"})
	if err != nil {
		t.Fatal(err)
	}
	if !contains(s.Secrets, ".env") || !contains(s.Untracked, "untracked.txt") || contains(s.Untracked, "debug.log") || !contains(s.Submodules, "vendor/sub") {
		t.Fatalf("snapshot: secrets %v untracked %v submodules %v", s.Secrets, s.Untracked, s.Submodules)
	}
	out, err := r.git(context.Background(), r.withCache(), "ls-tree", "-r", "--name-only", s.BaseTree)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "bin.dat") {
		t.Fatalf("--exclude '*.dat' still carries bin.dat:\n%s", out)
	}
	if _, err := OpenRepo(context.Background(), t.TempDir(), t.TempDir()); !errors.Is(err, ErrNotRepo) {
		t.Fatalf("OpenRepo of a plain directory: %v", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func openRepo(t *testing.T, dir string) *Repo {
	t.Helper()
	r, err := OpenRepo(context.Background(), dir, filepath.Join(filepath.Dir(dir), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestExportModes(t *testing.T) {
	ctx := context.Background()
	dir := hostRepo(t)
	g := newLocalGuest(t)
	base, err := prepare(t, g, dir, "/work/app", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	g.sh(t, "/work/app", "echo guest-commit > committed.txt && git add committed.txt && git commit -q -m 'guest commit' && echo wip >> unstaged.txt && printf '\\000\\001' > newbin")
	r := openRepo(t, dir)

	// --to patch: applies with git am on a clean clone at the prepared HEAD.
	var patch bytes.Buffer
	res, err := ExportPatch(ctx, g, r, &base, ExportOptions{Message: "wip from vm", Patch: &patch})
	if err != nil {
		t.Fatal(err)
	}
	if res.Commits != 2 || !strings.Contains(patch.String(), "guest commit") || !strings.Contains(patch.String(), "GIT binary patch") {
		t.Fatalf("patch: %+v\n%s", res, patch.String())
	}
	clone := filepath.Join(t.TempDir(), "clone")
	git(t, filepath.Dir(clone), "clone", "-q", dir, clone)
	git(t, clone, "checkout", "-q", base.Head)
	cmd := exec.Command("git", "am", "-q")
	cmd.Dir, cmd.Stdin = clone, bytes.NewReader(patch.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git am: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(clone, "committed.txt")); string(b) != "guest-commit\n" {
		t.Fatalf("after am: %q", b)
	}

	// --to branch: creates banger/dev; the host's branch, index, worktree
	// stay; a second export moves it only from where the first left it.
	headBefore := git(t, dir, "rev-parse", "HEAD")
	statusBefore := git(t, dir, "status", "--porcelain")
	res, err = ExportBranch(ctx, g, r, &base, ExportOptions{Message: "wip from vm", Branch: "banger/dev"})
	if err != nil {
		t.Fatal(err)
	}
	if git(t, dir, "rev-parse", "HEAD") != headBefore || git(t, dir, "status", "--porcelain") != statusBefore {
		t.Fatal("export to a branch changed the host's HEAD, index or worktree")
	}
	if log := git(t, dir, "log", "--format=%s", "-3", "banger/dev"); log != "wip from vm\nguest commit\nthird (loose)\n" {
		t.Fatalf("banger/dev log:\n%s", log)
	}
	base.ExportBranch, base.ExportCommit = res.Branch, res.Commit
	g.sh(t, "/work/app", "echo more >> unstaged.txt")
	res2, err := ExportBranch(ctx, g, r, &base, ExportOptions{Message: "wip 2", Branch: "banger/dev"})
	if err != nil {
		t.Fatalf("second export: %v", err)
	}
	git(t, dir, "branch", "-f", "banger/dev", headBefore[:len(headBefore)-1]) // the host moves it
	base.ExportCommit = res2.Commit
	if _, err := ExportBranch(ctx, g, r, &base, ExportOptions{Message: "wip 3", Branch: "banger/dev"}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), res2.Commit) {
		t.Fatalf("export over a moved branch: %v", err)
	}

	// --to worktree: refused when the host changed a path the guest changed,
	// accepted when it changed another.
	write(t, filepath.Join(dir, "unstaged.txt"), "host edit\n", 0o644)
	_, err = ExportWorktree(ctx, g, r, &base, ExportOptions{Message: "x"})
	var oe *OverlapError
	if !errors.As(err, &oe) || !contains(oe.Paths, "unstaged.txt") {
		t.Fatalf("worktree export over an overlap: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "unstaged.txt")); string(b) != "host edit\n" {
		t.Fatal("a refused worktree export changed the host")
	}
	write(t, filepath.Join(dir, "unstaged.txt"), "two\n", 0o644)
	write(t, filepath.Join(dir, "untracked.txt"), "host changed another file\n", 0o644)
	if _, err := ExportWorktree(ctx, g, r, &base, ExportOptions{Message: "x"}); err != nil {
		t.Fatalf("worktree export without overlap: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "committed.txt")); string(b) != "guest-commit\n" {
		t.Fatalf("worktree export did not apply the guest's commit: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "unstaged.txt")); string(b) != "two\nwip\nmore\n" {
		t.Fatalf("worktree export: unstaged.txt = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "untracked.txt")); string(b) != "host changed another file\n" {
		t.Fatal("worktree export clobbered a host change")
	}
}

func TestStatusStates(t *testing.T) {
	ctx := context.Background()
	dir := hostRepo(t)
	g := newLocalGuest(t)
	base, err := prepare(t, g, dir, "/work/app", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	r := openRepo(t, dir)
	state := func() Status {
		st, err := GetStatus(ctx, g, r, &base)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := state(); st.State != StateClean {
		t.Fatalf("fresh workspace: %+v", st)
	}
	g.sh(t, "/work/app", "echo g > guest.txt")
	if st := state(); st.State != StateGuest || !contains(st.GuestFiles, "guest.txt") {
		t.Fatalf("guest change: %+v", st)
	}
	write(t, filepath.Join(dir, "host.txt"), "h\n", 0o644)
	if st := state(); st.State != StateBoth {
		t.Fatalf("both changed: %+v", st)
	}
	write(t, filepath.Join(dir, "guest.txt"), "h\n", 0o644)
	if st := state(); st.State != StateOverlap || !contains(st.Overlap, "guest.txt") {
		t.Fatalf("overlap: %+v", st)
	}
}

// A hostile guest: its .git/config names programs, it adds hooks and a
// symlink out of the repository. Exporting runs nothing and writes nothing
// outside the repository on the host.
func TestHostileGuestExport(t *testing.T) {
	ctx := context.Background()
	dir := hostRepo(t)
	g := newLocalGuest(t)
	base, err := prepare(t, g, dir, "/work/app", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	// The guest's own git runs these (in the guest, with the guest's
	// directory as cwd); on the host they would leave pwned.log (ignored,
	// so it never travels) in the host repository.
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	g.sh(t, "/work/app", `git config core.fsmonitor "touch pwned.log; false"
git config core.sshCommand "touch pwned.log"
git config diff.evil.textconv "touch pwned.log; cat"
git config core.pager "touch pwned.log; cat"
echo '* diff=evil' > .gitattributes
mkdir -p .git/hooks && printf '#!/bin/sh\ntouch pwned.log\n' > .git/hooks/post-merge && chmod +x .git/hooks/post-merge
ln -s `+outside+` escape
`)
	r := openRepo(t, dir)
	var patch bytes.Buffer
	if _, err := ExportPatch(ctx, g, r, &base, ExportOptions{Message: "x", Patch: &patch}); err != nil {
		t.Fatal(err)
	}
	if _, err := ExportBranch(ctx, g, r, &base, ExportOptions{Message: "x", Branch: "banger/evil"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ExportWorktree(ctx, g, r, &base, ExportOptions{Message: "x"}); err != nil {
		t.Fatalf("worktree export: %v", err)
	}
	// Now the symlink exists on the host; a guest writing through it must fail.
	g.sh(t, "/work/app", `rm escape && mkdir escape && echo x > escape/file`)
	// (the host's escape is a symlink to outside; applying a change beyond it is refused)
	if _, err := ExportWorktree(ctx, g, r, &base, ExportOptions{Message: "x"}); err == nil {
		t.Fatal("a worktree export through a host symlink was not refused")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("the guest wrote outside the repository: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned.log")); err == nil {
		t.Fatal("a program the guest named ran on the host")
	}
}

// testAgent is the test binary itself, as TestMain dispatches.
func testAgent(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// An agent older than the stream (its usage exit 2) is named as the cause,
// and nothing is left in the guest.
func TestPrepareWithAnOldAgent(t *testing.T) {
	g := newLocalGuest(t)
	p := plan(t, hostRepo(t))
	old := filepath.Join(t.TempDir(), "old-agent")
	write(t, old, "#!/bin/sh\necho usage >&2\nexit 2\n", 0o755)
	recorded := false
	_, err := Prepare(context.Background(), g, p, PrepareOptions{Path: "/work/app", Agent: old, Commit: func(Base) error { recorded = true; return nil }})
	if err == nil || !strings.Contains(err.Error(), "restart the VM") {
		t.Fatalf("prepare with an old agent: %v", err)
	}
	if recorded {
		t.Fatal("a failed prepare was recorded")
	}
	if out := g.sh(t, "/work", "ls -A"); out != "" {
		t.Fatalf("a failed prepare left %q in the guest", out)
	}
}

// A prepare cancelled while it sends says so, records nothing, and leaves
// no workspace at the path (a staged copy is removed by the next prepare).
func TestPrepareCancelled(t *testing.T) {
	g := newLocalGuest(t)
	p := plan(t, hostRepo(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	recorded := false
	_, err := Prepare(ctx, g, p, PrepareOptions{Path: "/work/app", Agent: testAgent(t),
		Progress: func(int64, int64) { cancel() },
		Commit:   func(Base) error { recorded = true; return nil }})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled prepare: %v", err)
	}
	if recorded {
		t.Fatal("a cancelled prepare was recorded")
	}
	if _, err := os.Stat(g.path("/work/app")); err == nil {
		t.Fatal("a cancelled prepare left a workspace")
	}
	if _, err := prepare(t, g, p.Snapshot.Repo.Top, "/work/app", nil, false); err != nil {
		t.Fatalf("prepare after a cancelled one: %v", err)
	}
}
