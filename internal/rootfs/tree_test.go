package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// Names resolve as in a chroot: symlinks in parents are followed to their
// targets inside the tree (an absolute one from the tree's top), `..`
// stops at the top, and the last component is never followed.
func TestResolveAsAChroot(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(filepath.Dir(dir), "outside-"+filepath.Base(dir))
	_ = os.Mkdir(outside, 0o755)
	defer os.RemoveAll(outside)
	for _, l := range [][2]string{{"usr/lib", "lib"}, {"/etc", "abs"}, {"../../..", "up"}, {outside, "host"}, {"loop", "loop"}} {
		_ = os.MkdirAll(filepath.Join(dir, "usr/lib"), 0o755)
		if err := os.Symlink(l[0], filepath.Join(dir, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for in, want := range map[string]string{
		"lib/x": "usr/lib/x", "/lib/a/b": "usr/lib/a/b", "abs/passwd": "etc/passwd", "up/etc/x": "etc/x",
		"../../../lib/y": "usr/lib/y", "host/f": outside[1:] + "/f", "lib": "lib", "./": ".",
	} {
		if got, err := tr.Resolve(in); err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := tr.Resolve("loop/x"); !errors.Is(err, ErrLoop) {
		t.Errorf("a symlink loop: %v", err)
	}
	// Writing at a symlink's name replaces the symlink; writing below one
	// lands inside the tree.
	if err := tr.WriteFile("host", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tr.WriteFile("abs/hostname", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "host")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("host is not a regular file now: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etc/hostname")); err != nil {
		t.Errorf("abs/hostname did not land in the tree's /etc: %v", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("written outside the tree: %v", entries)
	}
	if err := tr.RemoveAll("/"); err == nil {
		t.Error("removing the tree's top was allowed")
	}
}
