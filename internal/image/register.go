package image

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/banger-dev/banger/internal/bundle"
	"github.com/banger-dev/banger/internal/host/disk"
	"github.com/banger-dev/banger/internal/host/run"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/op"
)

// Names of the files a registration carries, in its staging directory:
// a bundle's.
const (
	RegisterKernel  = bundle.Kernel
	RegisterRootfs  = bundle.Rootfs
	RegisterInitrd  = bundle.Initrd
	RegisterModules = bundle.Modules
)

// RegisterDir makes the directory a registration's files are received
// into: dot-named in the images directory, so a daemon that dies
// meanwhile sweeps it at the next start.
func (s *Service) RegisterDir() (string, error) {
	if err := os.MkdirAll(s.cfg.Layout.ImagesDir(), 0o750); err != nil {
		return "", fmt.Errorf("creating images directory: %w", err)
	}
	return os.MkdirTemp(s.cfg.Layout.ImagesDir(), ".register-")
}

// Register starts an operation that checks the kernel, root filesystem
// and modules received into dir (see RegisterDir) and makes them the
// image name. dir is removed afterwards.
func (s *Service) Register(ctx context.Context, dir, name string) (model.Operation, error) {
	if err := model.ValidateImageRef(name); err != nil {
		_ = os.RemoveAll(dir)
		return model.Operation{}, err
	}
	return s.ops.Begin("image.register", name, func(ctx context.Context, p *op.Progress) error {
		defer os.RemoveAll(dir)
		_, err := s.installNew(ctx, name, &registerSource{dir: dir}, p)
		return err
	}), nil
}

// registerSource is a kernel, an ext4 root filesystem and the kernel's
// modules a user handed over.
type registerSource struct {
	dir     string
	modules string
	digest  string // known up front for a bundle (its manifest's), else hashed
	// A bundle's: its image config and where it came from.
	config   *model.ImageConfig
	describe string
}

func (r *registerSource) Describe() string {
	if r.describe != "" {
		return r.describe
	}
	return "registered by a user"
}

// Fetch checks what was received: a bzImage or ELF kernel, an ext4 that
// e2fsck finds clean (read, never mounted), and modules with their
// modules.dep, from the upload or else from the rootfs's own
// /lib/modules (read out with debugfs).
func (r *registerSource) Fetch(ctx context.Context, p Progress) (string, error) {
	p.Phase("checking the kernel and root filesystem", 0)
	if err := checkKernel(filepath.Join(r.dir, RegisterKernel)); err != nil {
		return "", err
	}
	rootfs := filepath.Join(r.dir, RegisterRootfs)
	if err := checkExt4(rootfs); err != nil {
		return "", err
	}
	if err := checkInitrd(filepath.Join(r.dir, RegisterInitrd)); err != nil {
		return "", err
	}
	if out, err := run.Output(ctx, []string{"e2fsck", "-fn", rootfs}); err != nil {
		return "", model.Errorf(model.ErrInvalid, "the root filesystem is not clean (e2fsck -fn): %s; repair it with e2fsck -f and register again", lastLine(out, err))
	}
	mods := filepath.Join(r.dir, RegisterModules)
	if _, err := os.Stat(mods); errors.Is(err, os.ErrNotExist) {
		p.Phase("reading the kernel modules out of the root filesystem", 0)
		if err := os.Mkdir(mods, 0o755); err != nil {
			return "", err
		}
		for _, src := range []string{"/usr/lib/modules", "/lib/modules"} {
			if _, err := run.Output(ctx, []string{"debugfs", "-R", "rdump " + src + " " + mods, rootfs}); err == nil {
				if entries, _ := os.ReadDir(filepath.Join(mods, "modules")); len(entries) > 0 {
					mods = filepath.Join(mods, "modules")
					break
				}
			}
		}
	}
	kvers, _ := os.ReadDir(mods)
	for _, k := range kvers {
		if _, err := os.Stat(filepath.Join(mods, k.Name(), "modules.dep")); err == nil {
			if r.modules != "" {
				return "", model.Errorf(model.ErrInvalid, "the modules hold several kernels' (%s, %s); give --modules DIR for this kernel's", filepath.Base(r.modules), k.Name())
			}
			r.modules = filepath.Join(mods, k.Name())
		}
	}
	if r.modules == "" {
		if _, err := os.Stat(filepath.Join(mods, "modules.dep")); err == nil {
			r.modules = mods // --modules named lib/modules/<kver> itself
		} else {
			return "", model.Errorf(model.ErrInvalid, "no kernel modules with a modules.dep: give --modules /lib/modules/KVER (run depmod there first), or a rootfs whose /lib/modules has them")
		}
	}
	if r.digest == "" {
		sum, _, err := disk.Sum(rootfs)
		if err != nil {
			return "", err
		}
		r.digest = "sha256:" + sum
	}
	return r.digest, nil
}

func (r *registerSource) Build(ctx context.Context, _ string, p Progress) (Artifacts, *model.ImageConfig, error) {
	size, err := apparentSize(r.dir)
	if err != nil {
		return Artifacts{}, nil, err
	}
	initrd := filepath.Join(r.dir, RegisterInitrd)
	if _, err := os.Stat(initrd); err != nil {
		initrd = ""
	}
	return Artifacts{Kernel: filepath.Join(r.dir, RegisterKernel), Initrd: initrd, ModulesDir: r.modules, KernelVersion: filepath.Base(r.modules),
		Rootfs: filepath.Join(r.dir, RegisterRootfs), Digest: r.digest, SizeBytes: size}, r.config, nil
}

// checkKernel accepts an x86 bzImage or an ELF vmlinux.
func checkKernel(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return model.Errorf(model.ErrInvalid, "no kernel was sent: give --kernel FILE")
	}
	defer f.Close()
	head := make([]byte, 0x206)
	n, _ := io.ReadFull(f, head)
	if isBzImage(head[:n]) {
		return nil
	}
	if n >= 4 && bytes.Equal(head[:4], []byte(elf.ELFMAG)) {
		if ef, err := elf.NewFile(f); err == nil {
			ef.Close()
			return nil
		}
	}
	return model.Errorf(model.ErrInvalid, "the kernel is neither a bzImage nor an ELF vmlinux (give the kernel image, e.g. /boot/vmlinuz-KVER)")
}

// initrdMagics are how an initramfs may start: a newc cpio archive, or
// one compressed as the kernel can unpack it (gzip, zstd, xz, lz4,
// bzip2, lzma).
var initrdMagics = [][]byte{[]byte("07070"), {0x1f, 0x8b}, {0x28, 0xb5, 0x2f, 0xfd}, {0xfd, '7', 'z', 'X', 'Z', 0}, {0x02, 0x21, 0x4c, 0x18}, []byte("BZh"), {0x5d, 0, 0}}

// checkInitrd accepts no initrd, or one that starts as an initramfs does.
func checkInitrd(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 6)
	n, _ := io.ReadFull(f, head)
	for _, m := range initrdMagics {
		if n >= len(m) && bytes.Equal(head[:len(m)], m) {
			return nil
		}
	}
	return model.Errorf(model.ErrInvalid, "the initrd is neither a cpio archive nor one compressed as a kernel unpacks it (gzip, zstd, xz, lz4, bzip2, lzma)")
}

// checkExt4 reads the superblock: the ext2/3/4 magic at byte 1080.
func checkExt4(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return model.Errorf(model.ErrInvalid, "no root filesystem was sent: give --rootfs FILE")
	}
	defer f.Close()
	magic := make([]byte, 2)
	if _, err := f.ReadAt(magic, 1024+56); err != nil || magic[0] != 0x53 || magic[1] != 0xef {
		return model.Errorf(model.ErrInvalid, "the root filesystem is not ext4 (no ext4 superblock); make one with mkfs.ext4 -d TREE FILE SIZE")
	}
	return nil
}

func lastLine(out []byte, err error) string {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) > 0 {
		return string(lines[len(lines)-1])
	}
	return err.Error()
}
