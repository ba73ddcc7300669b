package cli

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

func (a *app) imageRegisterCommand() *cobra.Command {
	var kernel, rootfsFile, initrd, modules string
	cmd := &cobra.Command{
		Use:   "register NAME --kernel FILE --rootfs FILE [--initrd FILE] [--modules DIR]",
		Short: "Register your own kernel and ext4 root filesystem as an image",
		Long: "Registers a kernel (a bzImage or an ELF vmlinux) and an ext4 root filesystem as\n" +
			"image NAME. banger reads the files as you and streams them to the daemon, which\n" +
			"checks them before anything is registered: the kernel's format, the ext4\n" +
			"superblock and `e2fsck -fn`. The kernel's modules (with modules.dep) come from\n" +
			"--modules (a /lib/modules/KVER directory) or else the rootfs's own /lib/modules,\n" +
			"read without mounting it. An --initrd (a cpio archive, compressed or not) is\n" +
			"unpacked before banger's own initramfs, whose /init still boots the VM: it adds\n" +
			"files, not a boot of its own. The rootfs boots like debian-12's: an image with\n" +
			"an init (systemd) runs it, one without keeps banger's agent as PID 1.",
		Example: "  banger image register mykernel --kernel ./vmlinuz --rootfs ./root.ext4 --modules ./lib/modules/6.1.0-50-cloud-amd64",
		Args:    exactArgs(1, "the image's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if kernel == "" || rootfsFile == "" {
				return usagef(cmd, "give both --kernel FILE and --rootfs FILE")
			}
			ctx := cmd.Context()
			for _, p := range []string{kernel, rootfsFile, initrd} {
				if p == "" {
					continue
				}
				if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
					return fmt.Errorf("%s is not a readable file: %w", p, err)
				}
			}
			if modules != "" {
				if fi, err := os.Stat(modules); err != nil || !fi.IsDir() {
					return fmt.Errorf("--modules %s is not a directory", modules)
				}
			}
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(writeRegistration(ctx, pw, kernel, rootfsFile, initrd, modules)) }()
			o, err := c.ImageRegister(ctx, pr, args[0])
			pr.Close()
			if err != nil {
				return err
			}
			final, err := a.waitOp(ctx, c, o, "registering image "+args[0])
			if err != nil {
				return err
			}
			if err := opErr(final); err != nil {
				return err
			}
			fmt.Fprintf(a.streams.Out, "image %s ready\n", args[0])
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&kernel, "kernel", "", "the kernel: a bzImage or an ELF vmlinux")
	f.StringVar(&rootfsFile, "rootfs", "", "the root filesystem: an ext4 image")
	f.StringVar(&initrd, "initrd", "", "an initramfs of the image's own, unpacked before banger's")
	f.StringVar(&modules, "modules", "", "the kernel's modules: a /lib/modules/KVER directory with modules.dep (default: the rootfs's own)")
	return cmd
}

// writeRegistration writes the tar the daemon takes: vmlinuz, rootfs.ext4,
// initrd, and the modules' directories and regular files under
// modules/KVER/.
func writeRegistration(ctx context.Context, w io.Writer, kernel, rootfsFile, initrd, modules string) error {
	tw := tar.NewWriter(w)
	add := func(src, name string) error {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		return err
	}
	if err := add(kernel, "vmlinuz"); err != nil {
		return err
	}
	if err := add(rootfsFile, "rootfs.ext4"); err != nil {
		return err
	}
	if initrd != "" {
		if err := add(initrd, "initrd"); err != nil {
			return err
		}
	}
	if modules != "" {
		top := "modules/" + filepath.Base(filepath.Clean(modules))
		err := filepath.WalkDir(modules, func(p string, d fs.DirEntry, err error) error {
			if err != nil || ctx.Err() != nil {
				return err
			}
			rel, _ := filepath.Rel(modules, p)
			name := filepath.ToSlash(filepath.Join(top, rel))
			switch {
			case d.IsDir():
				return tw.WriteHeader(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o755})
			case d.Type().IsRegular():
				return add(p, name)
			}
			return nil // links (build, source) are not needed
		})
		if err != nil {
			return err
		}
	}
	return tw.Close()
}
