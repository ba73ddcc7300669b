package workspace

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
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

// countingWriter counts bytes written, for progress.
type countingWriter struct {
	w        io.Writer
	n        int64
	progress func(int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if c.progress != nil {
		c.progress(c.n)
	}
	return n, err
}

// writeTar streams the git directory's content for the guest: objects
// under objects/, meta files at their own names. It reads each file as the
// invoking user, in one stream.
func writeTar(ctx context.Context, w io.Writer, objects, meta []objectFile) error {
	tw := tar.NewWriter(w)
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
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: fi.Size(), ModTime: fi.ModTime(), Format: tar.FormatPAX}); err != nil {
			return fmt.Errorf("writing the stream: %w", err)
		}
		if _, err := io.CopyN(tw, in, fi.Size()); err != nil {
			return fmt.Errorf("sending %s: %w", f.abs, err)
		}
		return nil
	}
	for _, f := range objects {
		if err := put("objects/"+f.name, f, 0o444); err != nil {
			return err
		}
	}
	for _, f := range meta {
		if err := put(f.name, f, 0o644); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finishing the stream: %w", err)
	}
	return nil
}
