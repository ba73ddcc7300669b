package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/guest"
)

// The initramfs's mount points (internal/initramfs creates them).
const (
	lowerDir   = "/lower"   // the read-only base
	upperFSDir = "/upperfs" // the writable disk: upper/ and work/ of the overlay
	newRoot    = "/newroot" // the overlay, the guest's root after switch root
)

// apiMounts are the kernel filesystems mounted first and moved into the
// new root.
var apiMounts = []struct {
	dir, fstype, data string
	flags             uintptr
}{
	{"/proc", "proc", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	{"/sys", "sysfs", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	{"/dev", "devtmpfs", "mode=0755", unix.MS_NOSUID},
	{"/run", "tmpfs", "mode=0755", unix.MS_NOSUID | unix.MS_NODEV},
}

func (b *boot) mountEarly() error {
	for _, m := range apiMounts {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.fstype, m.dir, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mounting %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	return nil
}

func (b *boot) mountRoot() error {
	if err := mount(b.disks.base, lowerDir, "ext4", unix.MS_RDONLY, ""); err != nil {
		return err
	}
	if err := mount(b.disks.upper, upperFSDir, "ext4", 0, ""); err != nil {
		return err
	}
	upper, work := filepath.Join(upperFSDir, "upper"), filepath.Join(upperFSDir, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lowerDir, upper, work)
	if err := mount("overlay", newRoot, "overlay", 0, opts); err != nil {
		return err
	}
	if b.disks.work == "" {
		b.log.Printf("no disk labelled %s: /work stays on the root overlay", guest.LabelWork)
		return nil
	}
	dir := filepath.Join(newRoot, "work")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := mount(b.disks.work, dir, "ext4", 0, ""); err != nil {
		return err
	}
	// `vm set --disk` grows the disk file on the host; the filesystem is
	// grown here, by the guest's own kernel, never by host tools reading
	// a guest-written filesystem.
	if grown, err := growExt4(b.disks.work, dir); err != nil {
		b.log.Printf("growing /work: %v", err)
	} else if grown {
		b.log.Printf("grew /work to fill its disk")
	}
	return nil
}

// mountRootReadOnly mounts the root overlay of a maintenance boot: the
// base and the VM's disk both read-only, the VM's upper layer stacked on
// the base as a second lower layer, so the merged view is what the VM saw
// and nothing can change it. /work is not mounted.
func (b *boot) mountRootReadOnly() error {
	if err := mount(b.disks.base, lowerDir, "ext4", unix.MS_RDONLY, ""); err != nil {
		return err
	}
	if err := mount(b.disks.upper, upperFSDir, "ext4", unix.MS_RDONLY, ""); err != nil {
		return err
	}
	lower := lowerDir
	if st, err := os.Stat(filepath.Join(upperFSDir, "upper")); err == nil && st.IsDir() {
		lower = filepath.Join(upperFSDir, "upper") + ":" + lowerDir
	}
	return mount("overlay", newRoot, "overlay", unix.MS_RDONLY, "lowerdir="+lower)
}

// ext4ResizeFS is EXT4_IOC_RESIZE_FS: _IOW('f', 16, __u64).
const ext4ResizeFS = 0x40086610

// growExt4 grows the ext4 mounted at dir to fill its block device.
func growExt4(dev, dir string) (bool, error) {
	d, err := os.Open(dev)
	if err != nil {
		return false, err
	}
	size, err := unix.IoctlGetUint64(int(d.Fd()), unix.BLKGETSIZE64)
	if err != nil {
		d.Close()
		return false, fmt.Errorf("reading the size of %s: %w", dev, err)
	}
	// The superblock: block count (lo at 4, hi at 0x150 with the 64bit
	// feature), log2(block size)-10 at 24, incompat features at 0x60.
	sb := make([]byte, 1024)
	_, err = d.ReadAt(sb, 1024)
	d.Close()
	if err != nil {
		return false, fmt.Errorf("reading the superblock of %s: %w", dev, err)
	}
	le := func(b []byte) uint64 { return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 }
	blocks := le(sb[4:8])
	if le(sb[0x60:0x64])&0x80 != 0 {
		blocks |= le(sb[0x150:0x154]) << 32
	}
	logBS := le(sb[24:28])
	if logBS > 6 {
		return false, fmt.Errorf("%s has an unexpected block size", dev)
	}
	bs := uint64(1024) << logBS
	want := size / bs
	if want <= blocks {
		return false, nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), ext4ResizeFS, uintptr(unsafe.Pointer(&want))); errno != 0 {
		return false, fmt.Errorf("resizing: %w", errno)
	}
	return true, nil
}

func mount(source, target, fstype string, flags uintptr, data string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mounting %s (%s) on %s: %w", source, fstype, target, err)
	}
	return nil
}

// switchRoot moves the API mounts into the new root and makes it "/", as
// switch_root does: the initramfs is rootfs, which pivot_root refuses. The
// initramfs's files stay (in memory) but are no longer reachable.
func (b *boot) switchRoot() error {
	for _, m := range apiMounts {
		dst := filepath.Join(newRoot, m.dir)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.dir, dst, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("moving %s into the new root: %w", m.dir, err)
		}
	}
	if err := unix.Chdir(newRoot); err != nil {
		return fmt.Errorf("entering the new root: %w", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving the new root onto /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot into the new root: %w", err)
	}
	return unix.Chdir("/")
}
