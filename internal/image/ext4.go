package image

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

const (
	ext4Block      = 4096
	ext4InodeSize  = 256
	ext4InodeRatio = 16384   // mke2fs.conf's default: one inode per 16 KiB
	minRootfsSize  = 1 << 30 // the base is sparse: unused space costs nothing
)

// treeUsage estimates what a tree takes in ext4: bytes of 4 KiB blocks
// (hard links counted once; symlinks under 60 bytes live in the inode) and
// the number of inodes.
func treeUsage(root string) (bytes, inodes int64, err error) {
	type key struct{ dev, ino uint64 }
	seen := map[key]bool{}
	blocks := func(n int64) int64 { return (n + ext4Block - 1) / ext4Block * ext4Block }
	err = filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 && !fi.IsDir() {
			k := key{st.Dev, st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		inodes++
		switch {
		case fi.IsDir():
			bytes += blocks(max(fi.Size(), ext4Block))
		case fi.Mode().IsRegular():
			bytes += blocks(fi.Size())
		case fi.Mode()&fs.ModeSymlink != 0 && fi.Size() >= 60:
			bytes += ext4Block
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("measuring the tree: %w", err)
	}
	return bytes, inodes, nil
}

// rootfsGeometry sizes an ext4 image for a tree: content plus 20%, plus
// inode tables and room for metadata, rounded up to a MiB, at least
// minSize (1 GiB); inodes are the tree's plus 25%, or the default
// ratio's if more.
func rootfsGeometry(contentBytes, treeInodes, minSize int64) (size, inodes int64) {
	inodes = treeInodes + treeInodes/4 + 1024
	size = contentBytes + contentBytes/5 + inodes*ext4InodeSize + 32<<20
	size = (size + 1<<20 - 1) / (1 << 20) * (1 << 20)
	size = max(size, minSize)
	inodes = max(inodes, size/ext4InodeRatio)
	return size, inodes
}

// writeExt4 makes an ext4 image of the tree at root with mkfs.ext4 -d: no
// mounting, and ownership, modes, links, xattrs and device nodes kept.
// No journal (the base is mounted read-only in every guest) and no
// reserved blocks (no one writes to it).
func (t tools) writeExt4(ctx context.Context, mkfs, root, img, label string) error {
	content, nodes, err := treeUsage(root)
	if err != nil {
		return err
	}
	size, inodes := rootfsGeometry(content, nodes, t.minRootfs)
	argv := []string{mkfs, "-q", "-F", "-L", label, "-d", root,
		"-b", strconv.Itoa(ext4Block), "-I", strconv.Itoa(ext4InodeSize), "-N", strconv.FormatInt(inodes, 10),
		"-m", "0", "-O", "^has_journal", img, strconv.FormatInt(size/1024, 10) + "k"}
	if _, err := t.output(ctx, argv); err != nil {
		return fmt.Errorf("writing rootfs (tree %d MiB, image %d MiB): %w", content>>20, size>>20, err)
	}
	return nil
}

// ensureModulesDep runs depmod on the modules copy if it has no
// modules.dep (a kernel package always ships one; a hand-made tree may
// not). depmod wants <base>/lib/modules/<kver>: a link gives it that.
func (t tools) ensureModulesDep(ctx context.Context, work, modulesDir, kver string) error {
	if _, err := os.Lstat(filepath.Join(modulesDir, "modules.dep")); err == nil {
		return nil
	}
	depmod, err := t.lookPath("depmod")
	if err != nil {
		return fmt.Errorf("the kernel modules have no modules.dep and depmod is not found; install it: apt-get install kmod")
	}
	base := filepath.Join(work, "depmod")
	if err := os.MkdirAll(filepath.Join(base, "lib"), 0o755); err != nil {
		return fmt.Errorf("generating modules.dep: %w", err)
	}
	if err := replaceSymlink(filepath.Dir(modulesDir), filepath.Join(base, "lib", "modules")); err != nil {
		return err
	}
	if _, err := t.output(ctx, []string{depmod, "-b", base, kver}); err != nil {
		return fmt.Errorf("generating modules.dep: %w", err)
	}
	return nil
}
