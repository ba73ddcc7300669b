package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/banger-dev/banger/internal/model"
)

func TestCheckInitrd(t *testing.T) {
	dir := t.TempDir()
	if err := checkInitrd(filepath.Join(dir, "none")); err != nil {
		t.Fatalf("no initrd: %v", err)
	}
	for name, head := range map[string][]byte{"cpio": []byte("070701000"), "gzip": {0x1f, 0x8b, 8, 0}, "zstd": {0x28, 0xb5, 0x2f, 0xfd, 0}} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, head, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := checkInitrd(p); err != nil {
			t.Errorf("%s initrd refused: %v", name, err)
		}
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("MZ\x90\x00 a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkInitrd(bad); !errors.Is(err, model.ErrInvalid) {
		t.Fatalf("a file that is no initramfs: %v", err)
	}
}

// An image's own initrd is part of its identity and goes first, padded,
// in the initramfs a VM boots.
func TestInitrdGoesFirst(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t)
	build := func(initrd []byte) model.Image {
		src := quick("sha256:r")
		work := t.TempDir()
		art, _, err := src.Build(ctx, work, phases(func(string) {}))
		if err != nil {
			t.Fatal(err)
		}
		if initrd != nil {
			art.Initrd = filepath.Join(work, "initrd")
			if err := os.WriteFile(art.Initrd, initrd, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		name := "plain"
		if initrd != nil {
			name = "own"
		}
		im, err := s.publish(ctx, name, "test", art, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		return im
	}
	plain, own := build(nil), build([]byte("070701xyz"))
	if plain.ID == own.ID || own.InitrdPath == "" || plain.InitrdPath != "" {
		t.Fatalf("plain %+v own %+v", plain, own)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "initramfs"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := prependInitrd(f, own.InitrdPath); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(f.Name()); err != nil || !bytes.Equal(b, []byte("070701xyz\x00\x00\x00")) {
		t.Fatalf("initramfs starts %q (%v), want the initrd padded to 4 bytes", b, err)
	}
}
