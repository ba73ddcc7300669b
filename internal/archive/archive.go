// Package archive makes and unpacks the tar streams of `banger vm cp`, on
// the host, as the invoking user. Pack reads a tree as that user and keeps
// modes, symlinks and hard links; Unpack writes one through an os.Root, so
// no entry of a stream (which a guest made) is created, followed or opened
// outside the destination directory, whatever its names and links say.
package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/rootfs"
)

// Stats counts what a stream carried.
type Stats struct {
	Entries int
	Bytes   int64
	// Skipped names entries that have no place on this side (sockets when
	// packing; devices, which an unprivileged user cannot make, when
	// unpacking).
	Skipped []string
}

// PackOptions are what a whole root filesystem's stream needs beyond a
// copy's.
type PackOptions struct {
	// Xattrs packs each entry's extended attributes (PAX records).
	Xattrs bool
	// End names an empty file packed last, so the reader can tell a
	// complete stream from one that broke off between entries.
	End string
}

// Pack writes src as a tar stream to w, its entries named under top
// (src's contents at the top level when top is "."). A symlink is packed
// as the link, never followed.
func Pack(ctx context.Context, w io.Writer, src, top string) (Stats, error) {
	return PackWith(ctx, w, src, top, PackOptions{})
}

// PackWith is Pack with options.
func PackWith(ctx context.Context, w io.Writer, src, top string, o PackOptions) (Stats, error) {
	tw := tar.NewWriter(w)
	var st Stats
	links := map[[2]uint64]string{} // (dev, inode) → first name, for hard links
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := path.Join(top, filepath.ToSlash(rel))
		if top == "." && rel == "." {
			name = "."
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return packOne(tw, p, name, info, links, o, &st)
	})
	if err == nil && o.End != "" {
		err = tw.WriteHeader(&tar.Header{Name: o.End, Typeflag: tar.TypeReg, Mode: 0o600, Format: tar.FormatPAX})
	}
	if err != nil {
		return st, fmt.Errorf("packing %s: %w", src, err)
	}
	if err := tw.Close(); err != nil {
		return st, fmt.Errorf("packing %s: %w", src, err)
	}
	return st, nil
}

func packOne(tw *tar.Writer, p, name string, info fs.FileInfo, links map[[2]uint64]string, o PackOptions, st *Stats) error {
	if info.Mode()&fs.ModeSocket != 0 {
		st.Skipped = append(st.Skipped, name)
		return nil
	}
	var target string
	if info.Mode()&fs.ModeSymlink != 0 {
		t, err := os.Readlink(p)
		if err != nil {
			return err
		}
		target = t
	}
	hdr, err := tar.FileInfoHeader(info, target)
	if err != nil {
		return err
	}
	hdr.Name = name
	if info.IsDir() && name != "." {
		hdr.Name += "/"
	}
	// Owners are the unpacking side's business: the guest's user, or the
	// host user who asked.
	hdr.Uname, hdr.Gname = "", ""
	hdr.Format = tar.FormatPAX
	if sys, ok := info.Sys().(*syscall.Stat_t); ok && info.Mode().IsRegular() && sys.Nlink > 1 {
		key := [2]uint64{uint64(sys.Dev), sys.Ino} //nolint:unconvert // Dev's type differs between architectures
		if first, seen := links[key]; seen {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			links[key] = name
		}
	}
	if o.Xattrs {
		if err := packXattrs(hdr, p); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	st.Entries++
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(tw, f)
	st.Bytes += n
	return err
}

// packXattrs adds p's extended attributes (not following a symlink) to
// hdr as SCHILY.xattr PAX records, as GNU tar and the OCI layer
// specification write them.
func packXattrs(hdr *tar.Header, p string) error {
	size, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || size == 0 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing the attributes of %s: %w", p, err)
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(p, buf); err != nil {
		return fmt.Errorf("listing the attributes of %s: %w", p, err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		n, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return fmt.Errorf("reading attribute %s of %s: %w", name, p, err)
		}
		val := make([]byte, n)
		if n, err = unix.Lgetxattr(p, name, val); err != nil {
			return fmt.Errorf("reading attribute %s of %s: %w", name, p, err)
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+name] = string(val[:n])
	}
	return nil
}

// UnsafeNameError is an entry whose name is absolute or climbs out of the
// stream's top.
type UnsafeNameError struct{ Name string }

func (e *UnsafeNameError) Error() string {
	return fmt.Sprintf("refusing entry %q: it names a place outside the destination", e.Name)
}

// Options steer Unpack.
type Options struct {
	// Rename, when set, replaces the first component of every entry's
	// name ("src/a" becomes "dst/a"): how `cp SRC DST` gives the copy
	// DST's name.
	Rename string
}

// Unpack writes the tar stream r into dir, confined to it.
func Unpack(ctx context.Context, r io.Reader, dir string, opt Options) (Stats, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Stats{}, fmt.Errorf("opening %s: %w", dir, err)
	}
	defer root.Close()
	u := &unpacker{root: root, rename: opt.Rename}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return u.st, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return u.st, fmt.Errorf("reading the tar stream: %w", err)
		}
		name, err := entryName(hdr.Name, opt.Rename)
		if err != nil {
			return u.st, err
		}
		if err := u.one(name, hdr, tr); err != nil {
			return u.st, fmt.Errorf("unpacking %s: %w", hdr.Name, err)
		}
	}
	// Directory modes and times last: a read-only directory must not stop
	// its own entries being written, and writing them changes its mtime.
	for i := len(u.dirs) - 1; i >= 0; i-- {
		d := u.dirs[i]
		if err := root.Chmod(d.name, d.mode); err != nil {
			return u.st, fmt.Errorf("unpacking %s: %w", d.name, err)
		}
		_ = root.Chtimes(d.name, d.mtime, d.mtime)
	}
	return u.st, nil
}

// entryName cleans a tar name to a path relative to the destination.
func entryName(raw, rename string) (string, error) {
	n := strings.TrimPrefix(raw, "./")
	if n == "" || n == "." || n == "./" {
		n = "."
	}
	if path.IsAbs(n) {
		return "", &UnsafeNameError{raw}
	}
	clean := path.Clean(n)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", &UnsafeNameError{raw}
	}
	if rename != "" && clean != "." {
		_, rest, _ := strings.Cut(clean, "/")
		clean = path.Join(rename, rest)
	}
	return clean, nil
}

type dirMode struct {
	name  string
	mode  fs.FileMode
	mtime time.Time
}

type unpacker struct {
	root   *os.Root
	rename string
	dirs   []dirMode
	st     Stats
}

func (u *unpacker) one(name string, hdr *tar.Header, r io.Reader) error {
	mode := hdr.FileInfo().Mode()
	perm := mode.Perm() | mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if fi, err := u.root.Lstat(name); err == nil && !fi.IsDir() {
			if err := u.root.Remove(name); err != nil {
				return err
			}
		}
		if err := u.root.MkdirAll(name, 0o700); err != nil {
			return err
		}
		u.dirs = append(u.dirs, dirMode{name, perm, hdr.ModTime})
	case tar.TypeReg:
		if err := u.clear(name); err != nil {
			return err
		}
		f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		n, err := io.Copy(f, r)
		u.st.Bytes += n
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := u.root.Chmod(name, perm); err != nil {
			return err
		}
		_ = u.root.Chtimes(name, hdr.ModTime, hdr.ModTime)
	case tar.TypeSymlink:
		if err := u.clear(name); err != nil {
			return err
		}
		if err := u.root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
	case tar.TypeLink:
		target, err := entryName(hdr.Linkname, u.rename)
		if err != nil {
			return err
		}
		if err := u.clear(name); err != nil {
			return err
		}
		if err := u.root.Link(target, name); err != nil {
			return err
		}
	case tar.TypeFifo, tar.TypeChar, tar.TypeBlock:
		made, err := u.mknod(name, hdr)
		if err != nil {
			return err
		}
		if !made {
			u.st.Skipped = append(u.st.Skipped, name)
			return nil
		}
	case tar.TypeXGlobalHeader:
		return nil
	default:
		u.st.Skipped = append(u.st.Skipped, name)
		return nil
	}
	u.st.Entries++
	return nil
}

// mknod makes a FIFO or device node (through rootfs.Mknod: os.Root has
// none). Devices need privileges the invoking user seldom has; without
// them the entry is skipped.
func (u *unpacker) mknod(name string, hdr *tar.Header) (bool, error) {
	if err := u.clear(name); err != nil {
		return false, err
	}
	err := rootfs.Mknod(u.root, name, rootfs.NodeMode(hdr), unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	if errors.Is(err, unix.EPERM) && hdr.Typeflag != tar.TypeFifo {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("making %s: %w", name, err)
	}
	return true, nil
}

// clear makes room for a non-directory entry: whatever non-directory is
// there goes (a symlink is replaced, never followed); a directory stays
// and the entry fails, as tar does.
func (u *unpacker) clear(name string) error {
	if dir := path.Dir(name); dir != "." {
		if err := u.root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	fi, err := u.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("a directory is in the way")
	}
	return u.root.Remove(name)
}
