package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/rootfs"
)

// ent is one layer entry as a test writes it.
type ent struct {
	name, link string
	typ        byte
	mode       int64
	body       string
	uid, gid   int
	xattrs     map[string]string
	major      int64
}

func file(name, body string) ent { return ent{name: name, typ: tar.TypeReg, mode: 0o644, body: body} }
func dir(name string) ent        { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}
func hardlink(name, target string) ent { return ent{name: name, typ: tar.TypeLink, link: target} }

func layer(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode,
			Size: int64(len(e.body)), Uid: e.uid, Gid: e.gid, ModTime: time.Unix(1700000000, 0),
			Devmajor: e.major, Devminor: 3, Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		for k, v := range e.xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// flatten applies layers oldest first to a fresh tree and returns its
// directory.
func flatten(t testing.TB, layers ...[]byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tree, err := rootfs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	for i, l := range layers {
		if _, err := Apply(context.Background(), tree, bytes.NewReader(l)); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
	}
	return dir
}

// listing is the tree as "path type [content|target]" lines, sorted.
func listing(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.IsDir():
			lines = append(lines, rel+"/")
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			lines = append(lines, rel+" -> "+target)
		case d.Type().IsRegular():
			b, _ := os.ReadFile(p)
			lines = append(lines, rel+" = "+string(b))
		default:
			lines = append(lines, rel+" "+d.Type().String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func wantTree(t *testing.T, dir string, want ...string) {
	t.Helper()
	sort.Strings(want)
	if got := listing(t, dir); got != strings.Join(want, "\n") {
		t.Errorf("tree:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

func TestWhiteouts(t *testing.T) {
	lower := layer(t, dir("a/"), file("a/keep", "k"), file("a/gone", "g"), dir("a/sub/"), file("a/sub/deep", "d"),
		dir("o/"), file("o/old", "o"), dir("o/nested/"), file("o/nested/old", "o"), file("f", "f"))
	upper := layer(t,
		file("a/.wh.gone", ""), file("a/sub/.wh.deep", ""), // plain whiteouts
		file("o/new-before", "n"),    // this layer's own entries survive the opaque marker
		dir("o/nested/"),             // and so does a directory it names, emptied of lower content
		file("o/.wh..wh..opq", ""),   // opaque: lower content of o goes
		file("o/new-after", "n"),     // entries after the marker too
		file("./.wh.f", ""),          // "./" prefix
		file("a/x", "mine"),          // made here, then a whiteout in the same layer: stays
		file("a/.wh.x", ""),          //
		file("missing/.wh.none", ""), // a whiteout of nothing is fine
	)
	d := flatten(t, lower, upper)
	wantTree(t, d, "a/", "a/keep = k", "a/sub/", "a/x = mine",
		"o/", "o/new-before = n", "o/new-after = n", "o/nested/")
	// The whiteout files themselves are never created.
	if strings.Contains(listing(t, d), ".wh.") {
		t.Error("a whiteout file landed in the tree")
	}
}

func TestReplacements(t *testing.T) {
	lower := layer(t, dir("d/"), file("d/in", "x"), file("f", "file"), dir("keep/"), file("keep/a", "a"),
		file("target", "old"), hardlink("twin", "target"), symlink("s", "target"))
	upper := layer(t,
		file("d", "now a file"),      // a directory replaced by a file
		dir("f/"), file("f/in", "y"), // a file replaced by a directory
		dir("keep/"), file("keep/b", "b"), // a directory over a directory merges
		file("target", "new"),                       // replacing a hard link's target leaves the twin alone
		file("s", "not a link"),                     // a symlink replaced, not written through
		file("dup", "first"), file("dup", "second"), // the last duplicate wins
	)
	d := flatten(t, lower, upper)
	wantTree(t, d, "d = now a file", "f/", "f/in = y", "keep/", "keep/a = a", "keep/b = b",
		"target = new", "twin = old", "s = not a link", "dup = second")

	// A hard link whose target a later layer deletes keeps its content.
	d = flatten(t, layer(t, file("t", "content"), hardlink("l", "t")), layer(t, file(".wh.t", "")))
	wantTree(t, d, "l = content")
	// A hard link through "./" and absolute spellings, in the same layer.
	d = flatten(t, layer(t, file("./x", "1"), hardlink("/y", "./x"), hardlink("z", "/x")))
	wantTree(t, d, "x = 1", "y = 1", "z = 1")
	var a, b syscall.Stat_t
	_ = syscall.Lstat(filepath.Join(d, "x"), &a)
	_ = syscall.Lstat(filepath.Join(d, "z"), &b)
	if a.Ino != b.Ino || a.Nlink != 3 {
		t.Errorf("hard links: inodes %d %d, nlink %d", a.Ino, b.Ino, a.Nlink)
	}
}

// Names and links that point out of the tree land inside it, or fail;
// nothing outside is created, followed or opened.
func TestHostileLayersStayInside(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(base, "tree")
	_ = os.Mkdir(tree, 0o755)
	tr, err := rootfs.Open(tree)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	layers := [][]byte{
		layer(t, file("../../outside/dotdot", "x"), file("/abs", "x"),
			symlink("up", "../outside"), symlink("absl", outside), symlink("loop", "loop")),
		// Written through the symlinks a lower layer planted: they resolve
		// inside the tree.
		layer(t, file("up/through", "x"), file("absl/through", "x"), dir("up/newdir/")),
	}
	for i, l := range layers {
		if _, err := Apply(context.Background(), tr, bytes.NewReader(l)); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
	}
	// A hard link to a host path, and a name through a symlink loop, fail.
	for _, l := range [][]byte{
		layer(t, hardlink("h", filepath.Join(outside, "secret"))),
		layer(t, file("loop/x", "x")),
	} {
		if _, err := Apply(context.Background(), tr, bytes.NewReader(l)); err == nil {
			t.Error("a hostile layer applied without error")
		}
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 1 {
		t.Fatalf("the layers wrote outside the tree: %v", entries)
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "host" {
		t.Fatal("the host file changed")
	}
	got := listing(t, tree)
	// An absolute symlink resolves from the tree's top, as in the guest.
	inTree := strings.TrimPrefix(outside, "/")
	for _, want := range []string{"outside/dotdot = x", "abs = x", "outside/through = x", "outside/newdir/", inTree + "/through = x"} {
		if !strings.Contains(got, want) {
			t.Errorf("tree lacks %q:\n%s", want, got)
		}
	}
}

// fuzzNames are what fuzzed entries are called and point at: climbs out,
// absolute names, whiteouts, symlinks to the outside, nesting.
var fuzzNames = []string{"a", "a/b", "../x", "/etc/passwd", "../../outside/f", ".wh.a", "a/.wh..wh..opq",
	"link", "link/in", "a/link", ".", "./a/b/c", "abs", "abs/f", "outside", "outside/f", ".wh.link"}

// FuzzApply drives Apply with arbitrary layers built from the fuzzer's
// bytes (each 4 bytes an entry: type, name, link target, size) and checks
// that nothing outside the tree was created or changed.
func FuzzApply(f *testing.F) {
	f.Add([]byte{2, 7, 4, 0, 0, 8, 0, 5})             // link -> ../../outside/f, then link/in
	f.Add([]byte{2, 12, 14, 0, 0, 13, 0, 3})          // abs -> outside, then abs/f
	f.Add([]byte{0, 0, 0, 1, 1, 5, 0, 0, 3, 1, 0, 0}) // a dir, a whiteout, a hard link
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		outside := filepath.Join(base, "outside")
		_ = os.Mkdir(outside, 0o755)
		_ = os.WriteFile(filepath.Join(outside, "f"), []byte("host"), 0o644)
		tree := filepath.Join(base, "tree")
		_ = os.Mkdir(tree, 0o755)
		tr, err := rootfs.Open(tree)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		types := []byte{tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo}
		var ents []ent
		for i := 0; i+3 < len(data) && len(ents) < 64; i += 4 {
			e := ent{typ: types[int(data[i])%len(types)], name: fuzzNames[int(data[i+1])%len(fuzzNames)],
				mode: 0o755, body: strings.Repeat("x", int(data[i+3])%8)}
			target := fuzzNames[int(data[i+2])%len(fuzzNames)]
			if e.typ == tar.TypeSymlink && data[i+2]%2 == 0 {
				target = outside // an absolute symlink to a real host directory
			}
			if e.typ == tar.TypeSymlink || e.typ == tar.TypeLink {
				e.link = target
			}
			ents = append(ents, e)
		}
		// Two layers, so later entries go through what earlier ones made.
		half := len(ents) / 2
		for _, l := range [][]ent{ents[:half], ents[half:]} {
			_, _ = Apply(context.Background(), tr, bytes.NewReader(layer(t, l...)))
		}
		entries, _ := os.ReadDir(outside)
		b, _ := os.ReadFile(filepath.Join(outside, "f"))
		if len(entries) != 1 || string(b) != "host" {
			t.Fatalf("a layer reached outside the tree: %v, %q", entries, b)
		}
		top, _ := os.ReadDir(base)
		if len(top) != 2 {
			t.Fatalf("a layer created something beside the tree: %v", top)
		}
	})
}
