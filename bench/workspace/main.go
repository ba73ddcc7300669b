// Command workspace measures `banger workspace prepare` and `export` of a
// large repository against the plain baselines, in the same run, into the
// same VM: `tar -c <worktree incl. .git> | ssh guest tar -x` for prepare,
// and `git fetch` over ssh for export. The repository is generated
// deterministically (fast-import): -files files in its tree, -commits
// commits of history. Everything runs inside a network namespace the
// benchmark makes and removes.
//
//	CGO_ENABLED=0 go build -o /tmp/bin/ ./cmd/... && go run ./bench/workspace -bin /tmp/bin
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/banger-dev/banger/bench/benchns"
	"github.com/banger-dev/banger/internal/host/run"
)

func main() {
	bin := flag.String("bin", "/usr/local/bin", "directory holding banger, bangerd and banger-agent")
	n := flag.Int("n", 3, "runs per measurement")
	files := flag.Int("files", 20000, "files in the generated repository's tree")
	commits := flag.Int("commits", 5000, "commits of generated history")
	cache := flag.String("image-cache", "/var/cache/banger-test", "image cache dir (the debian-12 build is reused)")
	flag.Parse()
	var err error
	if !benchns.Inside() {
		err = benchns.Run("bgbenchws")
	} else {
		err = measure(*bin, *n, *files, *commits, *cache)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/workspace:", err)
		os.Exit(1)
	}
}

type bench struct{ *benchns.Banger }

func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

func measure(bin string, n, files, commits int, cache string) error {
	ctx := context.Background()
	bb, err := benchns.NewBanger(bin, "bgbenchws", fmt.Sprintf("image_cache_dir = %q\ndefault_memory = \"1G\"\ndefault_disk = \"8G\"\noverlay_size = \"2G\"\nboot_timeout = \"300s\"\n", cache))
	if err != nil {
		return err
	}
	defer bb.Close()
	b := &bench{bb}
	dir := b.Dir
	b.Env = []string{"XDG_CACHE_HOME=" + filepath.Join(dir, "cache"), "HOME=" + dir, "GIT_CONFIG_NOSYSTEM=1"}

	repo := filepath.Join(dir, "repo")
	genStart := time.Now()
	if err := generate(ctx, repo, files, commits, b.Env); err != nil {
		return fmt.Errorf("generating the repository: %w", err)
	}
	du, _ := run.Output(ctx, []string{"du", "-sh", repo})
	fmt.Printf("repository: %d files, %d commits, %s on disk (generated in %.1fs)\n", files, commits,
		strings.Fields(string(du))[0], time.Since(genStart).Seconds())

	if _, err := b.Run("vm", "create", "bench"); err != nil {
		return err
	}
	defer func() { _, _ = b.Run("vm", "delete", "--force", "bench") }()
	// Warm the SSH path once; neither side counts it.
	if _, err := b.Run("vm", "ssh", "bench", "--", "true"); err != nil {
		return err
	}

	var prep, tarTimes, exp, fetchTimes []time.Duration
	for i := 0; i < n; i++ {
		path := fmt.Sprintf("/work/ws%d", i)
		d, err := timed(func() error {
			_, err := b.Run("workspace", "prepare", "bench", repo, "--path", path)
			return err
		})
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		prep = append(prep, d)

		tarDir := fmt.Sprintf("/work/tar%d", i)
		d, err = timed(func() error {
			argv := append([]string{"sh", "-c", `tar -C "$1" -cf - . | (shift; "$@")`, "tar-ssh", repo},
				b.Argv("vm", "ssh", "bench", "--", "sh", "-c", "mkdir -p "+tarDir+" && tar -x -C "+tarDir)...)
			return run.Run(ctx, argv, run.Env(b.Env...))
		})
		if err != nil {
			return fmt.Errorf("tar|ssh baseline: %w", err)
		}
		tarTimes = append(tarTimes, d)

		// The guest's work: one commit and one uncommitted change.
		work := fmt.Sprintf("cd %s && echo run %d >> README && git add README && git commit -q -m 'guest %d' && echo wip >> f/00/0.txt", path, i, i)
		if _, err := b.Run("vm", "ssh", "bench", "--", "sh", "-c", work); err != nil {
			return fmt.Errorf("guest work: %w", err)
		}
		d, err = timed(func() error {
			_, err := b.Run("workspace", "export", "bench", repo, "--path", path, "--to", fmt.Sprintf("branch:bench/%d", i))
			return err
		})
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		exp = append(exp, d)

		// Baseline: git fetch of the guest's HEAD over ssh (banger's ssh as
		// the transport) into a scratch clone of the host repository.
		if _, err := b.Run("vm", "ssh", "bench", "--", "sh", "-c", fmt.Sprintf("cd %s && git add -A && git commit -q -m wip", path)); err != nil {
			return err
		}
		scratch := filepath.Join(dir, fmt.Sprintf("scratch%d", i))
		if err := run.Run(ctx, []string{"git", "clone", "-q", "--shared", repo, scratch}, run.Env(b.Env...)); err != nil {
			return err
		}
		sshWrap := filepath.Join(dir, "ssh-wrap")
		script := "#!/bin/sh\nshift\nexec " + shellJoin(b.Argv("vm", "ssh", "bench", "--", "sh", "-c")) + " \"$*\"\n"
		if err := os.WriteFile(sshWrap, []byte(script), 0o755); err != nil {
			return err
		}
		d, err = timed(func() error {
			return run.Run(ctx, []string{"git", "-C", scratch, "fetch", "-q", "ssh://bench" + path, "HEAD"},
				run.Env(append(b.Env, "GIT_SSH_COMMAND="+sshWrap)...))
		})
		if err != nil {
			return fmt.Errorf("git fetch baseline: %w", err)
		}
		fetchTimes = append(fetchTimes, d)
		_ = os.RemoveAll(scratch)
	}
	mp, mt, me, mf := benchns.Median(prep), benchns.Median(tarTimes), benchns.Median(exp), benchns.Median(fetchTimes)
	fmt.Printf("workspace prepare              median %6.2fs  (runs: %s)\n", mp.Seconds(), benchns.List(prep))
	fmt.Printf("tar -c | ssh tar -x (baseline) median %6.2fs  (runs: %s)\n", mt.Seconds(), benchns.List(tarTimes))
	fmt.Printf("prepare ratio %.2f\n", mp.Seconds()/mt.Seconds())
	fmt.Printf("workspace export --to branch   median %6.2fs  (runs: %s)\n", me.Seconds(), benchns.List(exp))
	fmt.Printf("git fetch over ssh (baseline)  median %6.2fs  (runs: %s)\n", mf.Seconds(), benchns.List(fetchTimes))
	fmt.Printf("export ratio %.2f\n", me.Seconds()/mf.Seconds())
	return nil
}

// generate writes a repository with files files and commits commits
// through git fast-import (deterministic content and dates), then packs it.
func generate(ctx context.Context, repo string, files, commits int, env []string) error {
	if err := run.Run(ctx, []string{"git", "init", "-q", "-b", "main", repo}, run.Env(env...)); err != nil {
		return err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		errc <- run.Run(ctx, []string{"git", "-C", repo, "fast-import", "--quiet"}, run.Stdin(pr), run.Env(env...))
		pr.Close()
	}()
	w := bufio.NewWriterSize(pw, 1<<20)
	perCommit := (files + commits - 1) / commits
	written := 0
	for c := 0; c < commits; c++ {
		fmt.Fprintf(w, "commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\ndata <<EOF\ncommit %d\nEOF\n", 1700000000+c, c)
		// Each commit adds new files until the tree is full, and edits an
		// older one, so history holds real deltas.
		for k := 0; k < perCommit && written < files; k++ {
			body := fmt.Sprintf("file %d\n%s\n", written, strings.Repeat(fmt.Sprintf("line of file %d\n", written), 20))
			fmt.Fprintf(w, "M 100644 inline f/%02d/%d.txt\ndata %d\n%s\n", written%100, written, len(body), body)
			written++
		}
		if c > 0 {
			old := (c * 7) % max(written, 1)
			body := fmt.Sprintf("file %d edited in commit %d\n%s\n", old, c, strings.Repeat(fmt.Sprintf("line of file %d\n", old), 20))
			fmt.Fprintf(w, "M 100644 inline f/%02d/%d.txt\ndata %d\n%s\n", old%100, old, len(body), body)
		}
		if c == 0 {
			fmt.Fprintf(w, "M 100644 inline README\ndata 7\nbench\n\n")
		}
	}
	werr := w.Flush()
	pw.Close()
	if err := <-errc; err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	for _, argv := range [][]string{
		{"git", "-C", repo, "repack", "-adq"},
		{"git", "-C", repo, "checkout", "-q", "-f", "main"},
	} {
		if err := run.Run(ctx, argv, run.Env(env...)); err != nil {
			return err
		}
	}
	return nil
}

func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
