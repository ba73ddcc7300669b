package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/banger-dev/banger/internal/rootfs"
)

// writeExt4 writes the tree at root as an ext4 image (rootfs.WriteExt4).
func (t tools) writeExt4(ctx context.Context, mkfs, root, img, label string) error {
	return rootfs.WriteExt4(ctx, root, img, rootfs.Ext4Options{Label: label, Mkfs: mkfs, MinSize: t.minRootfs, Output: t.output})
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
