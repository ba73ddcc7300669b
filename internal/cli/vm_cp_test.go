package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestParseCpEnd(t *testing.T) {
	for arg, want := range map[string]cpEnd{
		"-":             {stream: true},
		"dev:/work":     {vm: "dev", path: "/work"},
		"dev:rel/x":     {vm: "dev", path: "rel/x"},
		"dev:":          {vm: "dev"},
		"./a:b":         {path: "./a:b"},
		"/abs/a:b":      {path: "/abs/a:b"},
		"plain":         {path: "plain"},
		":leading":      {path: ":leading"},
		"1a2b3c4d:/etc": {vm: "1a2b3c4d", path: "/etc"},
	} {
		if got := parseCpEnd(arg); got != want {
			t.Errorf("parseCpEnd(%q) = %+v, want %+v", arg, got, want)
		}
	}
}

func oneFileTar(t *testing.T, name string) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o640, Size: 2}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write([]byte("hi"))
	_ = tw.Close()
	return &buf
}

// docker cp's rules for where a copy lands on the host.
func TestUnpackAt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// Into an existing directory, under the source's name.
	if _, err := unpackAt(ctx, oneFileTar(t, "f"), dir, false, false); err != nil || read(filepath.Join(dir, "f")) != "hi" {
		t.Fatalf("into a directory: %v", err)
	}
	// To a new name; then over an existing file.
	for range 2 {
		if _, err := unpackAt(ctx, oneFileTar(t, "f"), filepath.Join(dir, "g"), false, false); err != nil || read(filepath.Join(dir, "g")) != "hi" {
			t.Fatalf("to a new name: %v", err)
		}
	}
	if _, err := unpackAt(ctx, oneFileTar(t, "d/f"), filepath.Join(dir, "g"), true, false); err == nil {
		t.Fatal("a directory copied onto a file")
	}
	if _, err := unpackAt(ctx, oneFileTar(t, "f"), filepath.Join(dir, "missing", "g"), false, false); err == nil {
		t.Fatal("copied into a directory that does not exist")
	}
	if _, err := unpackAt(ctx, oneFileTar(t, "f"), filepath.Join(dir, "nodir")+"/", false, false); err == nil {
		t.Fatal("DST/ that does not exist was made")
	}
	// Contents of a directory make DST.
	if _, err := unpackAt(ctx, oneFileTar(t, "./f"), filepath.Join(dir, "c"), true, true); err != nil || read(filepath.Join(dir, "c", "f")) != "hi" {
		t.Fatalf("contents: %v", err)
	}
}
