package wsstream

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func git(t *testing.T, dir string, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir, "LC_ALL=C")
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func oidOf(t *testing.T, dir, content string) string {
	// Written, as in a real workspace: git reads a symlink's blob when
	// it checks a racily clean entry.
	return strings.TrimSpace(git(t, dir, content, "hash-object", "-w", "--stdin"))
}

type file struct {
	path, content string
	mode          uint32
}

// build writes a stream: staged entries, then the working tree.
func build(t *testing.T, dir string, staged, work []file) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var idx []IndexEntry
	for _, f := range staged {
		idx = append(idx, IndexEntry{Mode: f.mode, OID: oidOf(t, dir, f.content), Path: f.path})
	}
	if err := w.Index(idx); err != nil {
		t.Fatal(err)
	}
	if err := w.GitFile("info/exclude", 0o644, 7, strings.NewReader("*.log\n\n")); err != nil {
		t.Fatal(err)
	}
	var list []TreeEntry
	var content strings.Builder
	for _, f := range work {
		list = append(list, TreeEntry{Mode: f.mode, OID: oidOf(t, dir, f.content), Size: int64(len(f.content)), Path: f.path})
		content.WriteString(f.content)
	}
	data, err := w.Tree(list)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(data, content.String()); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUnpackWritesATrustedIndex(t *testing.T) {
	for _, format := range []string{"sha1", "sha256"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			git(t, dir, "", "init", "-q", "--object-format="+format, ".")
			staged := []file{
				{"a.txt", "old\n", ModeFile},
				{"x.sh", "#!/bin/sh\n", ModeExec},
				{"link", "x.sh", ModeSymlink},
				{"dir/sub/b.txt", "b\n", ModeFile},
				{"gone.txt", "gone\n", ModeFile},
				{"with space ü.txt", "", ModeFile},
			}
			work := []file{
				{"a.txt", "new\n", ModeFile},
				{"x.sh", "#!/bin/sh\n", ModeExec},
				{"link", "x.sh", ModeSymlink},
				{"dir/sub/b.txt", "b\n", ModeFile},
				{"with space ü.txt", "", ModeFile},
				{"untracked.txt", "u\n", ModeFile},
				{"big.bin", strings.Repeat("z", inlineMax+10), ModeFile},
			}
			if err := Unpack(context.Background(), bytes.NewReader(build(t, dir, staged, work)), dir, UnpackOptions{Format: format}); err != nil {
				t.Fatal(err)
			}
			// The entries git can trust carry the stat data of the files
			// the unpack wrote, so git reads none of them again.
			debug := parseDebug(t, git(t, dir, "", "ls-files", "--debug"))
			for _, p := range []string{"x.sh", "link", "dir/sub/b.txt", "with space ü.txt"} {
				var st syscall.Stat_t
				if err := syscall.Lstat(filepath.Join(dir, p), &st); err != nil {
					t.Fatal(err)
				}
				d := debug[p]
				if d["mtime"] != strconv.FormatInt(st.Mtim.Sec, 10)+":"+strconv.FormatInt(st.Mtim.Nsec, 10) ||
					d["ctime"] != strconv.FormatInt(st.Ctim.Sec, 10)+":"+strconv.FormatInt(st.Ctim.Nsec, 10) ||
					d["ino"] != strconv.FormatUint(st.Ino&0xffffffff, 10) || d["size"] != strconv.FormatInt(st.Size, 10) {
					t.Errorf("%s: index has %v, file has mtime %v ctime %v ino %d size %d", p, d, st.Mtim, st.Ctim, st.Ino, st.Size)
				}
			}
			if d := debug["a.txt"]; d["mtime"] != "0:0" || d["size"] != "0" {
				t.Errorf("a.txt differs from its staged blob but the index has stat data %v", d)
			}
			got := git(t, dir, "", "-c", "core.quotePath=false", "status", "--porcelain", "--untracked-files=all")
			want := "AM a.txt\nA  dir/sub/b.txt\nAD gone.txt\nA  link\nA  \"with space ü.txt\"\nA  x.sh\n?? big.bin\n?? untracked.txt\n"
			if got != want {
				t.Fatalf("status:\n%s\nwant:\n%s", got, want)
			}
			if fi, _ := os.Stat(filepath.Join(dir, "x.sh")); fi.Mode()&0o100 == 0 {
				t.Fatalf("x.sh lost its executable bit: %v", fi.Mode())
			}
			if b, _ := os.ReadFile(filepath.Join(dir, ".git/info/exclude")); string(b) != "*.log\n\n" {
				t.Fatalf("info/exclude = %q", b)
			}
		})
	}
}

// parseDebug reads `git ls-files --debug`: each path, then indented
// "key: value" pairs.
func parseDebug(t *testing.T, out string) map[string]map[string]string {
	t.Helper()
	res := map[string]map[string]string{}
	var cur map[string]string
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, " ") {
			cur = map[string]string{}
			p := line
			if uq, err := strconv.Unquote(line); err == nil {
				p = uq
			}
			res[p] = cur
			continue
		}
		for _, kv := range strings.Split(strings.TrimSpace(line), "\t") {
			k, v, _ := strings.Cut(kv, ": ")
			cur[k] = strings.TrimSpace(v)
		}
	}
	return res
}

func TestUnpackReadOnly(t *testing.T) {
	dir := t.TempDir()
	git(t, dir, "", "init", "-q", ".")
	files := []file{{"d/a.txt", "a\n", ModeFile}, {"x.sh", "x\n", ModeExec}}
	if err := Unpack(context.Background(), bytes.NewReader(build(t, dir, files, files)), dir, UnpackOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(dir, "d"), 0o755) })
	for _, p := range []string{"d", "d/a.txt", "x.sh"} {
		fi, err := os.Lstat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o222 != 0 {
			t.Errorf("%s is writable: %v", p, fi.Mode())
		}
	}
	if got := git(t, dir, "", "status", "--porcelain"); got != "A  d/a.txt\nA  x.sh\n" {
		t.Fatalf("status: %q", got)
	}
}

func TestBadNames(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf)
	for _, p := range []string{"../x", "/etc/passwd", ".git/config", "a/.GIT/hooks/x", "a//b", "a/./b", ""} {
		if _, err := w.Tree([]TreeEntry{{Mode: ModeFile, OID: strings.Repeat("0", 40), Path: p}}); err == nil {
			t.Errorf("Tree(%q) was accepted", p)
		}
	}
	// Streams made by hand with names reaching out of the top.
	zero := strings.Repeat("0", 40)
	for _, c := range []struct{ name, content string }{
		{".git/../escape", "x"},
		{treeName, "100644 " + zero + " 1\t../escape\x00"},
		{treeName, "100644 " + zero + " 1\t.git/hooks/pre-commit\x00"},
		{treeName, "100644 " + zero + " 1\tsub/.Git/config\x00"},
		{"other", "x"},
	} {
		buf.Reset()
		zw, _ := zstd.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		_ = tw.WriteHeader(&tar.Header{Name: c.name, Typeflag: tar.TypeReg, Size: int64(len(c.content)), Mode: 0o644})
		_, _ = tw.Write([]byte(c.content))
		_ = tw.WriteHeader(&tar.Header{Name: dataName, Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
		_, _ = tw.Write([]byte("x"))
		_ = tw.Close()
		_ = zw.Close()
		name := c.name + " " + c.content
		top := t.TempDir()
		dir := filepath.Join(top, "ws")
		if err := os.MkdirAll(filepath.Join(dir, ".git"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := Unpack(context.Background(), &buf, dir, UnpackOptions{}); err == nil {
			t.Errorf("a stream with %q was accepted", name)
		}
		if _, err := os.Lstat(filepath.Join(top, "escape")); err == nil {
			t.Errorf("%q wrote outside the directory", name)
		}
	}
}
