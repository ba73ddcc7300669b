package oci

import (
	"archive/tar"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/rootfs"
)

// needRoot skips, or fails under CI=true, when the test cannot make what
// an image holds (owners, devices, trusted.* xattrs) or read an ext4
// image without mounting it.
func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root (owners, device nodes, trusted.* xattrs)"
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil && why == "" {
			why = "needs " + tool + " (e2fsprogs)"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: a failure, not a skip)", why)
	}
	t.Skip(why)
}

// capNetBindService is a security.capability value (VFS_CAP_REVISION_2,
// effective) granting CAP_NET_BIND_SERVICE.
func capNetBindService() string {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|1)
	binary.LittleEndian.PutUint32(b[4:], 1<<10)
	return string(b)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// fidelityLayers writes, as two layers through a pipe (one holds a 5 GiB
// sparse file), every kind of entry an image may hold.
func fidelityLayers(t *testing.T, tree *rootfs.Tree) {
	t.Helper()
	longTarget := strings.Repeat("long/", 30) + "target"
	first := layer(t,
		ent{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		ent{name: "bin/su", typ: tar.TypeReg, mode: 0o4755, body: "setuid"},
		ent{name: "bin/wall", typ: tar.TypeReg, mode: 0o2755, body: "setgid", gid: 5},
		ent{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		ent{name: "nobody", typ: tar.TypeReg, mode: 0o000, body: "none"},
		ent{name: "big-ids", typ: tar.TypeReg, mode: 0o640, body: "ids", uid: 100000, gid: 200000},
		ent{name: "ping", typ: tar.TypeReg, mode: 0o755, body: "cap", xattrs: map[string]string{
			"security.capability": capNetBindService(), "trusted.banger": "t", "user.banger": "u"}},
		symlink("short", "bin/su"), symlink("long", longTarget), symlink("dangling", "does/not/exist"),
		symlink("absolute", "/bin/su"),
		hardlink("su-again", "bin/su"),
		ent{name: "dev/", typ: tar.TypeDir, mode: 0o755},
		ent{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1},
		ent{name: "dev/sda", typ: tar.TypeBlock, mode: 0o660, major: 8, gid: 6},
		ent{name: "fifo", typ: tar.TypeFifo, mode: 0o600},
	)
	if _, err := Apply(context.Background(), tree, strings.NewReader(string(first))); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		hdr := &tar.Header{Name: "sparse", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5<<30 + 4, ModTime: time.Unix(1700000000, 0)}
		err := tw.WriteHeader(hdr)
		if err == nil {
			_, err = io.CopyN(tw, zeros{}, 5<<30)
		}
		if err == nil {
			_, err = tw.Write([]byte("tail"))
		}
		for i := 0; err == nil && i < 20000; i++ {
			err = tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("many/f%05d", i), Typeflag: tar.TypeReg, Mode: 0o644})
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	if _, err := Apply(context.Background(), tree, pr); err != nil {
		t.Fatal(err)
	}
}

// The flattened tree becomes an ext4 image, read back with debugfs (no
// mount), that keeps every owner, mode, link, xattr, device and hole, and
// that e2fsck finds clean.
func TestFidelityThroughExt4(t *testing.T) {
	needRoot(t, "mkfs.ext4", "debugfs", "e2fsck")
	base := t.TempDir()
	dir := filepath.Join(base, "tree")
	_ = os.Mkdir(dir, 0o755)
	tree, err := rootfs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	start := time.Now()
	fidelityLayers(t, tree)
	t.Logf("layers applied in %s", time.Since(start))
	img := filepath.Join(base, "rootfs.ext4")
	if err := rootfs.WriteExt4(context.Background(), dir, img, rootfs.Ext4Options{Label: "banger-test"}); err != nil {
		t.Fatal(err)
	}
	t.Logf("ext4 written at %s", time.Since(start))
	if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	debugfs := func(req string) string {
		t.Helper()
		out, err := exec.Command("debugfs", "-R", req, img).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs %s: %v\n%s", req, err, out)
		}
		return string(out)
	}
	field := func(out, re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			return ""
		}
		return m[1]
	}
	for _, c := range []struct {
		path, mode, user, group string
	}{
		{"/bin/su", "04755", "0", "0"}, {"/bin/wall", "02755", "0", "5"}, {"/tmp", "01777", "0", "0"},
		{"/nobody", "0000", "0", "0"}, {"/big-ids", "0640", "100000", "200000"},
		{"/dev/null", "0666", "0", "0"}, {"/dev/sda", "0660", "0", "6"}, {"/fifo", "0600", "0", "0"},
	} {
		out := debugfs("stat " + c.path)
		if m := field(out, `Mode:\s+(\d+)`); m != c.mode {
			t.Errorf("%s: mode %s, want %s", c.path, m, c.mode)
		}
		if u, g := field(out, `User:\s+(\d+)`), field(out, `Group:\s+(\d+)`); u != c.user || g != c.group {
			t.Errorf("%s: owner %s:%s, want %s:%s", c.path, u, g, c.user, c.group)
		}
	}
	if out := debugfs("stat /dev/null"); !strings.Contains(out, "Type: character special") || !strings.Contains(out, "number: 01:03") {
		t.Errorf("/dev/null is not char 1,3:\n%s", out)
	}
	if out := debugfs("stat /dev/sda"); !strings.Contains(out, "Type: block special") {
		t.Errorf("/dev/sda is not a block device:\n%s", out)
	}
	if out := debugfs("stat /fifo"); !strings.Contains(out, "Type: FIFO") {
		t.Errorf("/fifo is not a FIFO:\n%s", out)
	}
	ea := debugfs("ea_list /ping")
	for _, want := range []string{"security.capability", "trusted.banger", `user.banger (1) = "u"`} {
		if !strings.Contains(ea, want) {
			t.Errorf("xattrs of /ping lack %q:\n%s", want, ea)
		}
	}
	for path, target := range map[string]string{"/short": "bin/su", "/long": strings.Repeat("long/", 30) + "target",
		"/dangling": "does/not/exist", "/absolute": "/bin/su"} {
		out := debugfs("stat " + path)
		// A short target is printed; a long one lives in a block: its size.
		if !strings.Contains(out, "Type: symlink") || !strings.Contains(out, target) && field(out, `Size:\s+(\d+)`) != strconv.Itoa(len(target)) {
			t.Errorf("%s is not a symlink to %s:\n%s", path, target, out)
		}
	}
	if a, b := field(debugfs("stat /bin/su"), `Inode:\s+(\d+)`), field(debugfs("stat /su-again"), `Inode:\s+(\d+)`); a == "" || a != b {
		t.Errorf("hard link: inodes %q and %q", a, b)
	}
	if links := field(debugfs("stat /bin/su"), `Links:\s+(\d+)`); links != "2" {
		t.Errorf("/bin/su has %s links, want 2", links)
	}
	sparse := debugfs("stat /sparse")
	size, _ := strconv.ParseInt(field(sparse, `Size:\s+(\d+)`), 10, 64)
	blocks, _ := strconv.ParseInt(field(sparse, `Blockcount:\s+(\d+)`), 10, 64)
	if size != 5<<30+4 || blocks > 64 {
		t.Errorf("/sparse: size %d, %d sectors allocated; want 5 GiB + 4 in a few blocks", size, blocks)
	}
	// The tail, past 5 GiB of hole, in the tree (reading it back out of the
	// image would copy the whole 5 GiB).
	b := make([]byte, 4)
	if f, err := os.Open(filepath.Join(dir, "sparse")); err == nil {
		_, _ = f.ReadAt(b, 5<<30)
		f.Close()
	}
	if string(b) != "tail" {
		t.Errorf("the sparse file's tail is %q", b)
	}
	if n := strings.Count(debugfs("ls -p /many"), "\n"); n < 20000 {
		t.Errorf("/many lists %d entries, want 20000", n)
	}
}
