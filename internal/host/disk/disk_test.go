package disk

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestCreateExt4(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/mkfs.ext4"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mkfs.ext4 missing in CI; install e2fsprogs")
		}
		t.Skip("mkfs.ext4 not installed")
	}
	p := filepath.Join(t.TempDir(), "d.ext4")
	if err := CreateExt4(context.Background(), p, 64, "banger-work"); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2048)
	f, _ := os.Open(p)
	defer f.Close()
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if b[1024+0x38] != 0x53 || b[1024+0x39] != 0xEF {
		t.Fatal("no ext4 superblock magic")
	}
	if got := string(b[1024+0x78 : 1024+0x78+11]); got != "banger-work" {
		t.Fatalf("label %q", got)
	}
	if fi, _ := os.Stat(p); fi.Size() != 64<<20 {
		t.Fatalf("size %d", fi.Size())
	}
	// An existing file is never overwritten.
	if err := CreateExt4(context.Background(), p, 64, "x"); err == nil {
		t.Fatal("overwrote an existing disk")
	}
}

func TestCopyKeepsHoles(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("data"), 64<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := Copy(context.Background(), src, dst); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil || fi.Size() != 64<<20+4 {
		t.Fatalf("copy: %v %v", fi, err)
	}
	if blocks := fi.Sys().(*syscall.Stat_t).Blocks * 512; blocks > 1<<20 {
		t.Errorf("the copy takes %d bytes: its holes were filled", blocks)
	}
}
