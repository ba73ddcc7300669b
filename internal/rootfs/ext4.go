package rootfs

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/banger-dev/banger/internal/host/run"
)

// ext4 geometry banger writes root images with.
const (
	Ext4Block      = 4096
	Ext4InodeSize  = 256
	ext4InodeRatio = 16384 // mke2fs.conf's default: one inode per 16 KiB
	// MinImageSize is the smallest root image: it is sparse, so unused
	// space costs nothing, and a guest's overlay has room above it.
	MinImageSize = 1 << 30
)

// Usage estimates what a tree takes in ext4: bytes of 4 KiB blocks (hard
// links counted once; symlinks under 60 bytes live in the inode; holes
// not counted) and the number of inodes.
func Usage(dir string) (bytes, inodes int64, err error) {
	type key struct{ dev, ino uint64 }
	seen := map[key]bool{}
	blocks := func(n int64) int64 { return (n + Ext4Block - 1) / Ext4Block * Ext4Block }
	err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		if st != nil && st.Nlink > 1 && !fi.IsDir() {
			k := key{st.Dev, st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		inodes++
		switch {
		case fi.IsDir():
			bytes += blocks(max(fi.Size(), Ext4Block))
		case fi.Mode().IsRegular() && st != nil:
			bytes += blocks(min(fi.Size(), st.Blocks*512))
		case fi.Mode().IsRegular():
			bytes += blocks(fi.Size())
		case fi.Mode()&fs.ModeSymlink != 0 && fi.Size() >= 60:
			bytes += Ext4Block
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("measuring the tree: %w", err)
	}
	return bytes, inodes, nil
}

// Geometry sizes an ext4 image for a tree: content plus 20%, plus inode
// tables and room for metadata, rounded up to a MiB, at least minSize;
// inodes are the tree's plus 25%, or the default ratio's if more.
func Geometry(contentBytes, treeInodes, minSize int64) (size, inodes int64) {
	inodes = treeInodes + treeInodes/4 + 1024
	size = contentBytes + contentBytes/5 + inodes*Ext4InodeSize + 32<<20
	size = (size + 1<<20 - 1) / (1 << 20) * (1 << 20)
	size = max(size, minSize)
	inodes = max(inodes, size/ext4InodeRatio)
	return size, inodes
}

// Ext4Options steer WriteExt4.
type Ext4Options struct {
	Label string
	// Mkfs is the mkfs.ext4 to run (default: found on PATH).
	Mkfs string
	// MinSize is the smallest image (default MinImageSize).
	MinSize int64
	// Output runs a command (default run.Output; tests swap it).
	Output func(ctx context.Context, argv []string, opts ...run.Option) ([]byte, error)
}

// WriteExt4 makes an ext4 image of the tree at dir with mkfs.ext4 -d: no
// mounting, and ownership, modes, hard links, xattrs, device nodes and
// holes kept. No journal (a base is mounted read-only in every guest) and
// no reserved blocks (no one writes to it).
func WriteExt4(ctx context.Context, dir, img string, o Ext4Options) error {
	if o.Output == nil {
		o.Output = run.Output
	}
	if o.MinSize == 0 {
		o.MinSize = MinImageSize
	}
	if o.Mkfs == "" {
		p, err := run.LookPath("mkfs.ext4")
		if err != nil {
			return fmt.Errorf("mkfs.ext4 is not installed; install it: apt-get install e2fsprogs")
		}
		o.Mkfs = p
	}
	content, nodes, err := Usage(dir)
	if err != nil {
		return err
	}
	size, inodes := Geometry(content, nodes, o.MinSize)
	argv := []string{o.Mkfs, "-q", "-F", "-L", o.Label, "-d", dir,
		"-b", strconv.Itoa(Ext4Block), "-I", strconv.Itoa(Ext4InodeSize), "-N", strconv.FormatInt(inodes, 10),
		"-m", "0", "-O", "^has_journal", img, strconv.FormatInt(size/1024, 10) + "k"}
	if _, err := o.Output(ctx, argv); err != nil {
		return fmt.Errorf("writing rootfs (tree %d MiB, image %d MiB): %w", content>>20, size>>20, err)
	}
	return nil
}
