package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// tree makes a source tree with every kind of entry vm cp keeps.
func tree(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(filepath.Join(src, "sub/deeper"), 0o755))
	must(t, os.MkdirAll(filepath.Join(src, "empty"), 0o700))
	must(t, os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "secret"), []byte("s"), 0o600))
	must(t, os.WriteFile(filepath.Join(src, "sub/deeper/big"), bytes.Repeat([]byte("0123456789"), 300_000), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "sub/empty-file"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(src, "name with spaces ü"), []byte("x"), 0o644))
	must(t, os.Symlink("sub/deeper/big", filepath.Join(src, "rel-link")))
	must(t, os.Symlink("/etc/hostname", filepath.Join(src, "abs-link")))
	must(t, os.Symlink("nowhere", filepath.Join(src, "dangling")))
	must(t, os.Link(filepath.Join(src, "run.sh"), filepath.Join(src, "sub/hard")))
	must(t, unix.Mkfifo(filepath.Join(src, "fifo"), 0o640))
	must(t, os.Chmod(filepath.Join(src, "sub/deeper"), 0o750))
	return src
}

// describe lists a tree as "name type mode [target|content-size]" lines,
// plus which names share an inode.
func describe(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	inodes := map[uint64][]string{}
	must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		line := rel + " " + fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %d bytes, sha256 %x", len(b), sha256.Sum256(b))
			inodes[fi.Sys().(*syscall.Stat_t).Ino] = append(inodes[fi.Sys().(*syscall.Stat_t).Ino], rel)
		}
		lines = append(lines, line)
		return nil
	}))
	for _, names := range inodes {
		if len(names) > 1 {
			sort.Strings(names)
			lines = append(lines, "linked "+strings.Join(names, " "))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestRoundTripKeepsModesLinksAndContent(t *testing.T) {
	ctx := context.Background()
	src := tree(t)
	var buf bytes.Buffer
	st, err := Pack(ctx, &buf, src, "src")
	must(t, err)
	if st.Bytes != 3_000_000+len64("#!/bin/sh\necho hi\n")+2 {
		t.Errorf("packed %d bytes of content", st.Bytes)
	}
	dst := t.TempDir()
	ust, err := Unpack(ctx, bytes.NewReader(buf.Bytes()), dst, Options{})
	must(t, err)
	if len(ust.Skipped) != 0 {
		t.Errorf("skipped %v", ust.Skipped)
	}
	if got, want := describe(t, filepath.Join(dst, "src")), describe(t, src); got != want {
		t.Fatalf("unpacked tree differs:\n%s\nwant:\n%s", got, want)
	}

	// Renamed on the way, as `cp SRC DST` with DST absent; and the
	// contents only, as `cp SRC/. DST`.
	buf.Reset()
	_, err = Pack(ctx, &buf, src, "src")
	must(t, err)
	dst2 := t.TempDir()
	_, err = Unpack(ctx, &buf, dst2, Options{Rename: "copy"})
	must(t, err)
	if got, want := describe(t, filepath.Join(dst2, "copy")), describe(t, src); got != want {
		t.Fatalf("renamed tree differs:\n%s\nwant:\n%s", got, want)
	}
	buf.Reset()
	_, err = Pack(ctx, &buf, src, ".")
	must(t, err)
	dst3 := t.TempDir()
	_, err = Unpack(ctx, &buf, dst3, Options{})
	must(t, err)
	if got, want := describe(t, dst3), describe(t, src); got != want {
		t.Fatalf("contents-only copy differs:\n%s\nwant:\n%s", got, want)
	}
}

func len64(s string) int64 { return int64(len(s)) }

// A single file and a symlink pack as themselves.
func TestPackFileAndSymlink(t *testing.T) {
	ctx := context.Background()
	src := tree(t)
	for _, name := range []string{"run.sh", "abs-link"} {
		var buf bytes.Buffer
		_, err := Pack(ctx, &buf, filepath.Join(src, name), "renamed")
		must(t, err)
		dst := t.TempDir()
		_, err = Unpack(ctx, &buf, dst, Options{})
		must(t, err)
		a, _ := os.Lstat(filepath.Join(src, name))
		b, err := os.Lstat(filepath.Join(dst, "renamed"))
		must(t, err)
		if a.Mode() != b.Mode() {
			t.Errorf("%s: mode %v, want %v", name, b.Mode(), a.Mode())
		}
	}
}

type entry struct {
	name, link string
	typ        byte
	body       string
}

func stream(t *testing.T, entries ...entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		must(t, tw.WriteHeader(h))
		if e.typ == tar.TypeReg {
			_, err := tw.Write([]byte(e.body))
			must(t, err)
		}
	}
	must(t, tw.Close())
	return &buf
}

// A stream a guest made can name anything; nothing lands outside the
// destination, and nothing outside is followed or changed.
func TestUnpackRefusesToLeaveTheDestination(t *testing.T) {
	ctx := context.Background()
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	must(t, os.WriteFile(victim, []byte("original"), 0o644))
	for _, tc := range []struct {
		name    string
		entries []entry
		unsafe  bool
	}{
		{"dot-dot", []entry{{name: "../victim", typ: tar.TypeReg, body: "evil"}}, true},
		{"dot-dot inside", []entry{{name: "a/../../victim", typ: tar.TypeReg, body: "evil"}}, true},
		{"absolute", []entry{{name: victim, typ: tar.TypeReg, body: "evil"}}, true},
		{"through a symlink to a directory", []entry{
			{name: "l", link: outside, typ: tar.TypeSymlink},
			{name: "l/victim", typ: tar.TypeReg, body: "evil"}}, false},
		{"through a relative symlink", []entry{
			{name: "d/", typ: tar.TypeDir},
			{name: "d/l", link: "../../../../../../../../" + outside, typ: tar.TypeSymlink},
			{name: "d/l/victim", typ: tar.TypeReg, body: "evil"}}, false},
		{"hard link to outside", []entry{{name: "h", link: "../victim", typ: tar.TypeLink}}, true},
		{"hard link through a symlink", []entry{
			{name: "l", link: outside, typ: tar.TypeSymlink},
			{name: "h", link: "l/victim", typ: tar.TypeLink}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := t.TempDir()
			_, err := Unpack(ctx, stream(t, tc.entries...), dst, Options{})
			if err == nil {
				t.Fatal("unpacked")
			}
			var ue *UnsafeNameError
			if tc.unsafe != errors.As(err, &ue) {
				t.Errorf("error %v: UnsafeNameError %v, want %v", err, !tc.unsafe, tc.unsafe)
			}
			if b, _ := os.ReadFile(victim); string(b) != "original" {
				t.Fatalf("the file outside now holds %q", b)
			}
			if names, _ := os.ReadDir(outside); len(names) != 1 {
				t.Fatalf("outside now holds %v", names)
			}
		})
	}

	// A symlink in the way of a file is replaced, never written through.
	dst := t.TempDir()
	_, err := Unpack(ctx, stream(t,
		entry{name: "l", link: victim, typ: tar.TypeSymlink},
		entry{name: "l", typ: tar.TypeReg, body: "new"}), dst, Options{})
	must(t, err)
	if b, _ := os.ReadFile(victim); string(b) != "original" {
		t.Fatalf("written through a symlink: %q", b)
	}
	if fi, err := os.Lstat(filepath.Join(dst, "l")); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("l is %v, %v; want the regular file", fi, err)
	}
}
