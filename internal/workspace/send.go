package workspace

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/banger-dev/banger/internal/host/run"
	"github.com/banger-dev/banger/internal/wsstream"
)

// objectFile is one file of an object directory that travels: a loose
// object, or a pack with its index (existing packs go as they are, so the
// guest never re-indexes history).
type objectFile struct {
	abs  string // on the host
	name string // relative to objects/
	size int64
}

var (
	looseDirRE  = regexp.MustCompile(`^[0-9a-f]{2}$`)
	looseFileRE = regexp.MustCompile(`^([0-9a-f]{38}|[0-9a-f]{62})$`)
	packRE      = regexp.MustCompile(`^pack-[0-9a-f]+\.pack$`)
)

// objectFiles lists the files of the repository's object directory, of
// every alternate it names, and of banger's cache. A name seen twice (the
// same object, loose in two places) travels once.
func (r *Repo) objectFiles() ([]objectFile, int64, error) {
	dirs, err := alternates(r.Objects(), 0)
	if err != nil {
		return nil, 0, err
	}
	dirs = append(dirs, r.Cache)
	seen := map[string]bool{}
	var out []objectFile
	var total int64
	add := func(abs, name string) error {
		if seen[name] {
			return nil
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return fmt.Errorf("reading object %s: %w", abs, err)
		}
		seen[name] = true
		out = append(out, objectFile{abs: abs, name: name, size: fi.Size()})
		total += fi.Size()
		return nil
	}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, 0, fmt.Errorf("reading object directory %s: %w", dir, err)
		}
		for _, e := range entries {
			switch {
			case e.IsDir() && looseDirRE.MatchString(e.Name()):
				files, err := os.ReadDir(filepath.Join(dir, e.Name()))
				if err != nil {
					return nil, 0, fmt.Errorf("reading object directory: %w", err)
				}
				for _, f := range files {
					if f.Type().IsRegular() && looseFileRE.MatchString(f.Name()) {
						if err := add(filepath.Join(dir, e.Name(), f.Name()), e.Name()+"/"+f.Name()); err != nil {
							return nil, 0, err
						}
					}
				}
			case e.IsDir() && e.Name() == "pack":
				packs, err := os.ReadDir(filepath.Join(dir, "pack"))
				if err != nil {
					return nil, 0, fmt.Errorf("reading packs: %w", err)
				}
				for _, p := range packs {
					if !packRE.MatchString(p.Name()) {
						continue
					}
					idx := strings.TrimSuffix(p.Name(), ".pack") + ".idx"
					if _, err := os.Stat(filepath.Join(dir, "pack", idx)); err != nil {
						continue // a pack still being written
					}
					for _, n := range []string{p.Name(), idx} {
						if err := add(filepath.Join(dir, "pack", n), "pack/"+n); err != nil {
							return nil, 0, err
						}
					}
				}
			}
		}
	}
	return out, total, nil
}

// alternates returns dir and the object directories its info/alternates
// names, recursively (git follows five levels).
func alternates(dir string, depth int) ([]string, error) {
	out := []string{dir}
	if depth >= 5 {
		return out, nil
	}
	f, err := os.Open(filepath.Join(dir, "info", "alternates"))
	if err != nil {
		return out, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !filepath.IsAbs(line) {
			line = filepath.Join(dir, line)
		}
		more, err := alternates(filepath.Clean(line), depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	return out, sc.Err()
}

// metaFiles are files of the git directory that travel besides objects:
// the shallow list (without it a shallow history is broken) and the local
// exclude and attribute files. Config, hooks, refs, logs and stashes do not.
func (r *Repo) metaFiles() []objectFile {
	var out []objectFile
	for _, name := range []string{"shallow", "info/exclude", "info/attributes"} {
		abs := filepath.Join(r.CommonDir, name)
		if fi, err := os.Stat(abs); err == nil && fi.Mode().IsRegular() {
			out = append(out, objectFile{abs: abs, name: name, size: fi.Size()})
		}
	}
	return out
}

// writeStream sends the snapshot for the guest in one stream: the staged
// entries (the guest writes its index from them), the working tree from
// the snapshot's objects (git cat-file --batch, so the guest writes bytes
// and inflates nothing), then the git directory: HEAD, config and refs
// made here, the object files and meta files. The git files arrive while
// the guest still writes the tree's. Host files are read as the invoking
// user.
func writeStream(ctx context.Context, w io.Writer, p *Plan, progress func(int64)) error {
	s := p.Snapshot
	r := s.Repo
	staged, err := r.lsTree(ctx, s.IndexTree, false)
	if err != nil {
		return err
	}
	skel, err := guestGitDir(ctx, s)
	if err != nil {
		return err
	}
	sw, err := wsstream.NewWriter(w)
	if err != nil {
		return err
	}
	sw.Progress = progress
	index := make([]wsstream.IndexEntry, 0, len(staged))
	for _, e := range staged {
		index = append(index, wsstream.IndexEntry{Mode: e.mode, OID: e.oid, Path: e.path})
	}
	if err := sw.Index(index); err != nil {
		return err
	}
	if err := sendTree(ctx, sw, r, s.tree); err != nil {
		return err
	}
	for _, f := range skel {
		if err := sw.GitFile(f.name, 0o644, int64(len(f.data)), bytes.NewReader(f.data)); err != nil {
			return err
		}
	}
	put := func(name string, f objectFile, mode int64) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		in, err := os.Open(f.abs)
		if err != nil {
			return fmt.Errorf("opening %s: %w", f.abs, err)
		}
		defer in.Close()
		fi, err := in.Stat()
		if err != nil {
			return fmt.Errorf("reading %s: %w", f.abs, err)
		}
		return sw.GitFile(name, mode, fi.Size(), in)
	}
	for _, f := range p.objects {
		if err := put("objects/"+f.name, f, 0o444); err != nil {
			return err
		}
	}
	for _, f := range p.meta {
		if err := put(f.name, f, 0o644); err != nil {
			return err
		}
	}
	return sw.Close()
}

// sendTree writes the working tree: its list, then the contents read in
// one `git cat-file --batch`. Files go in round-robin over their
// directories, so the guest's parallel writers seldom share one.
func sendTree(ctx context.Context, sw *wsstream.Writer, r *Repo, tree []treeEntry) error {
	order := interleave(tree)
	list := make([]wsstream.TreeEntry, 0, len(order))
	var oids strings.Builder
	for _, e := range order {
		list = append(list, wsstream.TreeEntry{Mode: e.mode, OID: e.oid, Size: e.size, Path: e.path})
		if e.typ == "blob" {
			oids.WriteString(e.oid + "\n")
		}
	}
	data, err := sw.Tree(list)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := r.gitRaw(ctx, r.withCache(), []run.Option{run.Stdin(strings.NewReader(oids.String())), run.Stdout(pw)}, "cat-file", "--batch")
		pw.CloseWithError(err)
		errc <- err
	}()
	err = func() error {
		br := bufio.NewReaderSize(pr, 1<<20)
		for _, e := range order {
			if e.typ != "blob" {
				continue
			}
			line, err := br.ReadString('\n')
			if err != nil {
				return fmt.Errorf("reading the snapshot's files: %w", err)
			}
			f := strings.Fields(line)
			if len(f) != 3 || f[0] != e.oid || f[1] != "blob" || f[2] != strconv.FormatInt(e.size, 10) {
				return fmt.Errorf("reading the snapshot's files: unexpected answer %q for %s", strings.TrimSpace(line), e.path)
			}
			if _, err := io.CopyN(data, br, e.size); err != nil {
				return fmt.Errorf("sending %s: %w", e.path, err)
			}
			if b, err := br.ReadByte(); err != nil || b != '\n' {
				return fmt.Errorf("reading the snapshot's files: %s is not followed by a newline", e.path)
			}
		}
		return nil
	}()
	if err != nil {
		pr.CloseWithError(err)
		cancel()
		<-errc //nolint:errcheck // cat-file was killed by the cancel; err says why
		return err
	}
	pr.Close()
	if err := <-errc; err != nil {
		return fmt.Errorf("reading the snapshot's files: %w", err)
	}
	return nil
}

// interleave orders entries one per directory in turn: the first entry of
// every directory, then the second of every directory, and so on. Blobs
// and gitlinks only.
func interleave(tree []treeEntry) []treeEntry {
	var dirs []string
	byDir := map[string][]treeEntry{}
	for _, e := range tree {
		if e.typ != "blob" && e.typ != "commit" {
			continue
		}
		d := path.Dir(e.path)
		if _, ok := byDir[d]; !ok {
			dirs = append(dirs, d)
		}
		byDir[d] = append(byDir[d], e)
	}
	out := make([]treeEntry, 0, len(tree))
	for i := 0; len(dirs) > 0; i++ {
		live := dirs[:0]
		for _, d := range dirs {
			if es := byDir[d]; i < len(es) {
				out = append(out, es[i])
				if i+1 < len(es) {
					live = append(live, d)
				}
			}
		}
		dirs = live
	}
	return out
}
