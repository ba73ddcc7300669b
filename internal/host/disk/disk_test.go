package disk

import (
	"context"
	"os"
	"path/filepath"
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
