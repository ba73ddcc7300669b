package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// describeTree lists a tree as sorted "name mode [-> target | size sha]"
// lines, and which names share an inode.
func (w *world) describeTree(dir string) string {
	w.t.Helper()
	var lines []string
	inodes := map[uint64][]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
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
			line += fmt.Sprintf(" %d %x", len(b), sha256.Sum256(b))
			ino := fi.Sys().(*syscall.Stat_t).Ino
			inodes[ino] = append(inodes[ino], rel)
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		w.t.Fatal(err)
	}
	for _, names := range inodes {
		if len(names) > 1 {
			sort.Strings(names)
			lines = append(lines, "linked "+strings.Join(names, " "))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// copyRoundTrip copies a tree with modes, symlinks and hard links into the
// VM and back, checks it arrived whole both ways, and that a guest whose
// tar lies cannot write outside the host's destination.
func (w *world) copyRoundTrip(vm string) {
	t := w.t
	t.Helper()
	src := filepath.Join(w.dir, "cp-src")
	for _, d := range []string{"sub/deeper", "private"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(src, "run.sh"), "#!/bin/sh\necho ran\n", 0o755)
	writeFile(t, filepath.Join(src, "private/key"), "k", 0o600)
	writeFile(t, filepath.Join(src, "sub/deeper/data"), strings.Repeat("0123456789", 200_000), 0o644)
	writeFile(t, filepath.Join(src, "name with spaces"), "", 0o640)
	for link, target := range map[string]string{"rel": "sub/deeper/data", "abs": "/etc/hostname", "dangling": "nowhere"} {
		if err := os.Symlink(target, filepath.Join(src, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(src, "run.sh"), filepath.Join(src, "sub/hard")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "private"), 0o700); err != nil {
		t.Fatal(err)
	}
	want := w.describeTree(src)

	w.ok("vm", "cp", src, vm+":/work/")
	if out := w.ok("vm", "ssh", vm, "--", "/work/cp-src/run.sh"); strings.TrimSpace(out) != "ran" {
		t.Errorf("the copied script ran as %q", out)
	}
	back := filepath.Join(w.dir, "cp-back")
	w.ok("vm", "cp", vm+":/work/cp-src", back)
	if got := w.describeTree(back); got != want {
		t.Errorf("vm cp round trip changed the tree:\n%s\nwant:\n%s", got, want)
	}
	// One file, renamed on the way, and a tar stream on stdout.
	w.ok("vm", "cp", vm+":/work/cp-src/private/key", filepath.Join(w.dir, "key-copy"))
	if b, err := os.ReadFile(filepath.Join(w.dir, "key-copy")); err != nil || string(b) != "k" {
		t.Errorf("single file copy: %q, %v", b, err)
	}
	if r := w.banger("vm", "cp", vm+":/no/such/file", filepath.Join(w.dir, "x")); r.code == 0 || !strings.Contains(r.stderr, "/no/such/file") {
		t.Errorf("copying a missing guest file: exit %d, %q", r.code, r.stderr)
	}

	// A guest that lies: its tar emits entries that climb out, and a
	// symlink to a host directory with a file "inside" it.
	outside := filepath.Join(w.dir, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	var evil bytes.Buffer
	tw := tar.NewWriter(&evil)
	for _, h := range []*tar.Header{
		{Name: "x/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "x/l", Typeflag: tar.TypeSymlink, Linkname: outside},
		{Name: "x/l/planted", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			_, _ = tw.Write([]byte("!"))
		}
	}
	_ = tw.Close()
	writeFile(t, filepath.Join(w.dir, "evil.tar"), evil.String(), 0o644)
	w.ok("vm", "cp", filepath.Join(w.dir, "evil.tar"), vm+":/root/evil.tar")
	w.ok("vm", "ssh", vm, "--", "sh", "-c", `printf '#!/bin/sh\ncat /root/evil.tar\n' > /usr/local/bin/tar && chmod +x /usr/local/bin/tar`)
	dst := filepath.Join(w.dir, "from-liar")
	r := w.banger("vm", "cp", vm+":/work/cp-src", dst)
	w.ok("vm", "ssh", vm, "--", "rm", "/usr/local/bin/tar")
	if r.code == 0 || !strings.Contains(r.stderr, "path escapes") {
		t.Errorf("a lying guest's stream: exit %d, %q; want the escape refused", r.code, r.stderr)
	}
	if names, _ := os.ReadDir(outside); len(names) != 0 {
		t.Fatalf("a guest's stream wrote outside the destination: %v", names)
	}
}
