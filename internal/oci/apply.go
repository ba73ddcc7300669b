// Package oci is banger's side of OCI images: applying layers to a root
// filesystem as the OCI image layer specification says (whiteouts, opaque
// directories, replacements, hard links), pulling images from registries
// with go-containerregistry into a layer cache kept by digest, and
// reading an image's config. Every file it writes goes through a
// rootfs.Tree.
package oci

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/banger-dev/banger/internal/rootfs"
)

// Whiteout names of the layer specification.
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// ApplyStats counts what a layer did.
type ApplyStats struct {
	Entries, Whiteouts int
	Bytes              int64
}

// Apply applies one uncompressed layer (a tar stream) to the tree, on top
// of the layers applied before it:
//   - an entry replaces what is at its name (a directory over a directory
//     keeps the contents; anything else replaces the old entry whole, and
//     a file never writes into an old inode that a hard link shares);
//   - ".wh.NAME" removes NAME of lower layers, and ".wh..wh..opq" in a
//     directory removes every lower entry under it; neither touches what
//     this layer itself adds, before or after the marker;
//   - later duplicates of a name win; names are cleaned ("./", "/", `..`
//     stopping at the top) and resolved inside the tree.
func Apply(ctx context.Context, t *rootfs.Tree, layer io.Reader) (ApplyStats, error) {
	a := applier{t: t, ours: map[string]bool{}}
	tr := tar.NewReader(layer)
	for {
		if err := ctx.Err(); err != nil {
			return a.st, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return a.st, fmt.Errorf("reading layer: %w", err)
		}
		if err := a.entry(hdr, tr); err != nil {
			return a.st, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	if err := t.Finish(rootfs.PutOptions{KeepOwner: true}); err != nil {
		return a.st, fmt.Errorf("setting directory modes: %w", err)
	}
	return a.st, nil
}

type applier struct {
	t *rootfs.Tree
	// ours holds the (resolved) names this layer created, and every
	// directory above them: what an opaque marker or a whiteout keeps.
	ours map[string]bool
	st   ApplyStats
}

func (a *applier) entry(hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader, tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
		return nil // the reader folds these into the next header
	case tar.TypeGNUSparse:
		// archive/tar reads a sparse file's holes as zeros; Put keeps
		// zeros as holes.
		hdr.Typeflag = tar.TypeReg
	}
	name := rootfs.Clean(hdr.Name)
	dir, base := path.Split(name)
	if base == opaqueMarker {
		a.st.Whiteouts++
		return a.opaque(dir)
	}
	if hidden, ok := strings.CutPrefix(base, whiteoutPrefix); ok {
		a.st.Whiteouts++
		return a.whiteout(dir + hidden)
	}
	hdr.Name = name
	if err := a.t.Put(hdr, r, rootfs.PutOptions{KeepOwner: true}); err != nil {
		return err
	}
	a.st.Entries++
	if hdr.Typeflag == tar.TypeReg {
		a.st.Bytes += hdr.Size
	}
	resolved, err := a.t.Resolve(name)
	if err != nil {
		return err
	}
	for p := resolved; p != "." && !a.ours[p]; p = path.Dir(p) {
		a.ours[p] = true
	}
	return nil
}

// whiteout removes name as lower layers made it.
func (a *applier) whiteout(name string) error {
	resolved, err := a.t.Resolve(name)
	if err != nil {
		return err
	}
	if resolved == "." {
		return errors.New("a whiteout of the root directory")
	}
	if a.ours[resolved] {
		return nil // this layer's own entry: only later layers may hide it
	}
	return a.t.RemoveAll(resolved)
}

// opaque removes everything under dir that lower layers made.
func (a *applier) opaque(dir string) error {
	resolved, err := a.t.Resolve(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return err
	}
	if resolved != "." {
		fi, err := a.t.Lstat(resolved)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return nil
		}
	}
	return a.prune(resolved)
}

// prune removes dir's entries that this layer did not make, descending
// into the directories it did (their lower contents go too).
func (a *applier) prune(dir string) error {
	entries, err := a.t.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := e.Name()
		if dir != "." {
			p = dir + "/" + p
		}
		switch {
		case !a.ours[p]:
			if err := a.t.RemoveAll(p); err != nil {
				return err
			}
		case e.IsDir():
			if err := a.prune(p); err != nil {
				return err
			}
		}
	}
	return nil
}
