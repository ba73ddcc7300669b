package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesWholeOrNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFile(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteWith(p, 0o600, func(f *os.File) error {
		_, _ = f.Write([]byte("half"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Fatalf("a failed write changed the file: %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("a failed write left files: %v", entries)
	}
	if err := WriteFile(p, []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if b, _ := os.ReadFile(p); string(b) != "two" || fi.Mode().Perm() != 0o640 {
		t.Fatalf("after write: %q %v", b, fi.Mode())
	}
}

func TestCleanTemps(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{".work.ext4.tmp-123", "work.ext4", ".hidden"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := CleanTemps(dir)
	if err != nil || len(removed) != 1 || removed[0] != ".work.ext4.tmp-123" {
		t.Fatalf("removed %v, %v", removed, err)
	}
}

func TestCreateWithNeverReplaces(t *testing.T) {
	p := filepath.Join(t.TempDir(), "disk")
	write := func(f *os.File) error { _, err := f.Write([]byte("new")); return err }
	if err := CreateWith(p, 0o600, write); err != nil {
		t.Fatal(err)
	}
	if err := CreateWith(p, 0o600, write); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second create: %v, want ErrExist", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(p)); len(entries) != 1 {
		t.Fatalf("files left: %v", entries)
	}
}
