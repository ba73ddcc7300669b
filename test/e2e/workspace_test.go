package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// hostGit runs git on the host side of a test, with a private HOME.
func hostGit(t *testing.T, home, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// hostRepo makes an empty git repository at <home>/src/app, with a
// user's .gitconfig in home, and a git runner for it.
func (w *world) hostRepo() (home, repo string, g func(args ...string) string) {
	t := w.t
	t.Helper()
	home = filepath.Join(w.dir, "home")
	repo = filepath.Join(home, "src", "app")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(home, ".gitconfig"), "[user]\n\tname = Host User\n\temail = host@example.com\n[init]\n\tdefaultBranch = main\n", 0o644)
	g = func(args ...string) string { return hostGit(t, home, repo, args...) }
	g("init", "-q")
	return home, repo, g
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
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

func digestTree(t *testing.T, dir string) string {
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
		line := p + " " + fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			line += " " + hex.EncodeToString(s[:])
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

// A repository with every file state goes into a real guest and its work
// comes back in each mode; the host repository is never written by a
// prepare, and a hostile guest makes the host run and write nothing.
func TestWorkspaceRoundTrip(t *testing.T) {
	w := newWorld(t)
	home, repo, g := w.hostRepo()
	writeFile(t, filepath.Join(repo, ".gitignore"), "*.log\n", 0o644)
	for _, f := range []string{"staged.txt", "unstaged.txt", "both.txt", "deleted.txt", "old name.txt", "run.sh"} {
		writeFile(t, filepath.Join(repo, f), f+"\n", 0o644)
	}
	writeFile(t, filepath.Join(repo, "dir", "ünï côde.txt"), "u\n", 0o644)
	if err := os.Symlink("staged.txt", filepath.Join(repo, "link")); err != nil {
		t.Fatal(err)
	}
	g("add", "-A")
	g("commit", "-q", "-m", "first")
	g("gc", "-q")
	writeFile(t, filepath.Join(repo, "staged.txt"), "changed\n", 0o644)
	g("add", "staged.txt")
	writeFile(t, filepath.Join(repo, "unstaged.txt"), "changed\n", 0o644)
	writeFile(t, filepath.Join(repo, "both.txt"), "staged\n", 0o644)
	g("add", "both.txt")
	writeFile(t, filepath.Join(repo, "both.txt"), "staged then changed\n", 0o644)
	os.Remove(filepath.Join(repo, "deleted.txt"))
	g("mv", "old name.txt", "new name.txt")
	_ = os.Chmod(filepath.Join(repo, "run.sh"), 0o755)
	writeFile(t, filepath.Join(repo, "untracked.txt"), "new\n", 0o644)
	writeFile(t, filepath.Join(repo, "empty"), "", 0o644)
	writeFile(t, filepath.Join(repo, "debug.log"), "ignored\n", 0o644)
	gitBefore := digestTree(t, filepath.Join(repo, ".git"))

	w.ok("vm", "create", "dev")
	if out := w.ok("workspace", "prepare", "dev", repo, "--dry-run"); !strings.Contains(out, "untracked.txt") {
		t.Fatalf("dry run does not list the untracked file:\n%s", out)
	}
	w.ok("workspace", "prepare", "dev", repo)
	if digestTree(t, filepath.Join(repo, ".git")) != gitBefore {
		t.Fatal("prepare wrote to the host's .git")
	}
	hostStatus := g("status", "--porcelain")
	guestStatus := w.ok("vm", "ssh", "dev", "--", "git", "-C", "/work/app", "status", "--porcelain")
	if hostStatus != guestStatus {
		t.Fatalf("git status differs\nhost:\n%s\nguest:\n%s", hostStatus, guestStatus)
	}
	if h, gs := g("diff", "--cached"), w.ok("vm", "ssh", "dev", "--", "git", "-C", "/work/app", "diff", "--cached"); h != gs {
		t.Fatalf("staged state differs\nhost:\n%s\nguest:\n%s", h, gs)
	}
	if out := w.ok("vm", "ssh", "dev", "--", "sh", "-c", "cd /work/app && git log --format=%s && test ! -e debug.log && test -x run.sh && readlink link"); out != "first\nstaged.txt\n" {
		t.Fatalf("guest history/files: %q", out)
	}
	if r := w.banger("workspace", "status", "dev", repo); r.code != 0 {
		t.Fatalf("status of a fresh workspace: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Work in the guest: a commit and an uncommitted edit.
	w.ok("vm", "ssh", "dev", "--", "sh", "-c", "cd /work/app && echo guest > guest.txt && git add guest.txt && git commit -q -m 'guest commit' && echo more >> unstaged.txt")
	if r := w.banger("workspace", "status", "dev", repo, "--json"); r.code != 3 {
		t.Fatalf("status after guest work: exit %d, want 3\n%s%s", r.code, r.stdout, r.stderr)
	}

	// --to patch applies with git am to a clean clone at the prepared HEAD.
	patch := filepath.Join(w.dir, "work.patch")
	w.ok("workspace", "export", "dev", repo, "--to", "patch:"+patch)
	clone := filepath.Join(home, "clone")
	hostGit(t, home, home, "clone", "-q", repo, clone)
	am := exec.Command("git", "am", "-q", patch)
	am.Dir, am.Env = clone, append(os.Environ(), "HOME="+home)
	if out, err := am.CombinedOutput(); err != nil {
		t.Fatalf("git am of the exported patch: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(clone, "guest.txt")); string(b) != "guest\n" {
		t.Fatalf("patch did not carry guest.txt: %q", b)
	}

	// --to branch: banger/dev holds the guest commit and the WIP commit;
	// the host's HEAD, index and worktree stay as they were.
	head := g("rev-parse", "HEAD")
	w.ok("workspace", "export", "dev", repo)
	if log := g("log", "--format=%s", "-2", "banger/dev"); log != "work in progress from VM dev\nguest commit\n" {
		t.Fatalf("banger/dev:\n%s", log)
	}
	if g("rev-parse", "HEAD") != head || g("status", "--porcelain") != hostStatus {
		t.Fatal("export to a branch touched the host's HEAD, index or worktree")
	}

	// --to worktree: refused over a host change to the same file, accepted
	// when the host changed another.
	orig, _ := os.ReadFile(filepath.Join(repo, "unstaged.txt"))
	writeFile(t, filepath.Join(repo, "unstaged.txt"), "host edit\n", 0o644)
	if r := w.banger("workspace", "export", "dev", repo, "--to", "worktree"); r.code != 1 || !strings.Contains(r.stderr, "unstaged.txt") {
		t.Fatalf("worktree export over an overlap: exit %d\n%s", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(repo, "unstaged.txt")); string(b) != "host edit\n" {
		t.Fatal("a refused export changed the host worktree")
	}
	writeFile(t, filepath.Join(repo, "unstaged.txt"), string(orig), 0o644)
	writeFile(t, filepath.Join(repo, "untracked.txt"), "host changed another file\n", 0o644)
	w.ok("workspace", "export", "dev", repo, "--to", "worktree")
	if b, _ := os.ReadFile(filepath.Join(repo, "guest.txt")); string(b) != "guest\n" {
		t.Fatalf("worktree export did not bring guest.txt: %q", b)
	}

	// A hostile guest: config that names programs, a hook, a symlink out.
	w.ok("vm", "ssh", "dev", "--", "sh", "-c", `cd /work/app &&
git config core.fsmonitor 'touch pwned.log; false' &&
git config core.sshCommand 'touch pwned.log' &&
git config diff.x.textconv 'touch pwned.log; cat' && echo '* diff=x' >> .gitattributes &&
mkdir -p .git/hooks && printf '#!/bin/sh\ntouch pwned.log\n' > .git/hooks/post-checkout && chmod +x .git/hooks/post-checkout &&
ln -s /etc/shadow shadow-link`)
	w.ok("workspace", "export", "dev", repo, "--to", "patch:"+patch)
	w.ok("workspace", "export", "dev", repo, "--to", "branch:banger/hostile")
	if _, err := os.Stat(filepath.Join(repo, "pwned.log")); err == nil {
		t.Fatal("a program the guest named ran on the host")
	}
	if _, err := os.Lstat(filepath.Join(repo, "shadow-link")); err == nil {
		t.Fatal("export to a branch wrote into the host worktree")
	}

	// --readonly: the guest cannot write the tree, not even as root.
	w.ok("workspace", "prepare", "dev", repo, "--path", "/work/ro", "--readonly")
	if r := w.banger("vm", "ssh", "dev", "--", "sh", "-c", "echo x > /work/ro/staged.txt"); r.code == 0 {
		t.Fatal("wrote into a --readonly workspace")
	}
	if out := w.ok("vm", "ssh", "dev", "--", "cat", "/work/ro/staged.txt"); out != "changed\n" {
		t.Fatalf("readonly workspace content: %q", out)
	}
	// Preparing over guest changes is refused without --force.
	if r := w.banger("workspace", "prepare", "dev", repo); r.code != 1 || !strings.Contains(r.stderr, "export") {
		t.Fatalf("prepare over guest changes: exit %d, %q", r.code, r.stderr)
	}
	var recs []struct {
		Path     string `json:"path"`
		ReadOnly bool   `json:"readonly"`
	}
	if err := json.Unmarshal([]byte(w.ok("workspace", "list", "dev", "--json")), &recs); err != nil || len(recs) != 2 || recs[1].Path != "/work/ro" || !recs[1].ReadOnly {
		t.Fatalf("workspace list: %+v (%v)", recs, err)
	}

	// Bad input: not a repository, a path outside /work, a stopped VM.
	if r := w.banger("workspace", "prepare", "dev", w.dir); r.code != 1 || !strings.Contains(r.stderr, "not a git repository") {
		t.Fatalf("prepare of a non-repository: exit %d, %q", r.code, r.stderr)
	}
	if r := w.banger("workspace", "prepare", "dev", repo, "--path", "/etc/app"); r.code != 1 || !strings.Contains(r.stderr, "outside /work") {
		t.Fatalf("prepare outside /work: exit %d, %q", r.code, r.stderr)
	}
}

// A stop during a prepare ends it cleanly: the guest keeps the old
// workspace, and the next prepare works.
func TestWorkspaceStopDuringPrepare(t *testing.T) {
	w := newWorld(t)
	home := filepath.Join(w.dir, "home")
	repo := filepath.Join(home, "big")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	g := func(args ...string) string { return hostGit(t, home, repo, args...) }
	g("init", "-q")
	writeFile(t, filepath.Join(repo, "a.txt"), "old\n", 0o644)
	g("add", "-A")
	g("-c", "user.name=u", "-c", "user.email=u@x", "commit", "-q", "-m", "old")
	w.ok("vm", "create", "dev")
	w.ok("workspace", "prepare", "dev", repo)

	// Enough incompressible data that the stream takes a while under TCG.
	big := make([]byte, 160<<20)
	for i := range big {
		big[i] = byte(i*7919 + i/4096)
	}
	if err := os.WriteFile(filepath.Join(repo, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(repo, "a.txt"), "new\n", 0o644)
	done := make(chan result, 1)
	go func() { done <- w.banger("workspace", "prepare", "dev", repo) }()
	// Stop once the guest is receiving into its staging directory.
	deadline := time.Now().Add(2 * time.Minute)
	for w.banger("vm", "ssh", "dev", "--", "test", "-d", "/work/.banger-workspace/big.new").code != 0 {
		select {
		case r := <-done:
			t.Fatalf("the prepare finished (exit %d) before the guest was seen receiving; make the repository bigger", r.code)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the guest never started receiving")
		}
	}
	w.ok("vm", "stop", "dev")
	if r := <-done; r.code != 1 || !strings.HasPrefix(r.stderr, "banger: ") {
		t.Fatalf("prepare interrupted by a stop: exit %d, %q", r.code, r.stderr)
	}
	w.ok("vm", "start", "dev")
	if out := w.ok("vm", "ssh", "dev", "--", "cat", "/work/big/a.txt"); out != "old\n" {
		t.Fatalf("after a stop during prepare the guest holds %q, want the old workspace", out)
	}
	w.ok("workspace", "prepare", "dev", repo)
	if out := w.ok("vm", "ssh", "dev", "--", "sh", "-c", "cat /work/big/a.txt; ls -A /work"); out != "new\nbig\nlost+found\n" {
		t.Fatalf("after the second prepare: %q", out)
	}
}
