// Package rootfs owns image trees on the host: a root filesystem being
// built (a Debian bootstrap, flattened OCI layers) before it becomes an
// ext4 image. Every edit banger makes to such a tree goes through a Tree:
// names are resolved inside the tree as a chroot would see them (a symlink
// in a parent is followed to its target in the tree, an absolute one from
// the tree's top, `..` stops at the top), the last component is replaced
// and never followed, and an os.Root makes every call, so nothing is
// created, opened or followed outside the tree. Device nodes are made,
// never opened. It also writes a tree as ext4 (ext4.go).
package rootfs

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxHops bounds the symlinks one name may pass through, as the kernel's
// ELOOP does.
const maxHops = 40

// ErrLoop is a name whose parents pass through too many symlinks.
var ErrLoop = errors.New("too many levels of symbolic links")

// Tree is a root filesystem being built in a host directory.
type Tree struct {
	dir  string
	root *os.Root
	// dirs are directory entries whose mode and times are set at Finish:
	// writing their entries would change the times again.
	dirs []dirMeta
	// realDirs are names known to be directories (not symlinks), and
	// parents open directories by name: what a layer of thousands of
	// entries in a few directories would otherwise look up again for
	// each. Both are forgotten whenever a directory is removed. A stale
	// entry could only misplace a write inside the tree: every descriptor
	// was opened through the os.Root.
	realDirs map[string]bool
	parents  map[string]*os.File
}

// maxParents bounds the open directory descriptors a Tree keeps.
const maxParents = 64

type dirMeta struct {
	name  string
	mode  fs.FileMode
	mtime time.Time
}

// Open opens the tree at dir, which must exist.
func Open(dir string) (*Tree, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening image tree %s: %w", dir, err)
	}
	return &Tree{dir: dir, root: r, realDirs: map[string]bool{}, parents: map[string]*os.File{}}, nil
}

// Dir is the tree's host directory.
func (t *Tree) Dir() string { return t.dir }

// Close releases the tree.
func (t *Tree) Close() error {
	t.forget()
	return t.root.Close()
}

// forget drops what the tree knows about its directories: one was
// removed or replaced.
func (t *Tree) forget() {
	for _, f := range t.parents {
		f.Close()
	}
	clear(t.parents)
	clear(t.realDirs)
}

// parent returns the open directory dir (a resolved name), making it and
// its parents when missing.
func (t *Tree) parent(dir string) (*os.File, error) {
	if f := t.parents[dir]; f != nil {
		return f, nil
	}
	if dir != "." && !t.realDirs[dir] {
		if err := t.root.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	f, err := t.root.Open(dir)
	if err != nil {
		return nil, err
	}
	if len(t.parents) >= maxParents {
		for k, old := range t.parents {
			old.Close()
			delete(t.parents, k)
		}
	}
	t.parents[dir] = f
	t.realDirs[dir] = true
	return f, nil
}

// Clean turns an entry name (a tar member, a path in the image) into the
// tree-relative form every method takes: no leading "/" or "./", `..`
// stopped at the top, "." for the top itself.
func Clean(name string) string {
	c := path.Clean("/" + name)
	if c == "/" {
		return "."
	}
	return c[1:]
}

// Resolve returns name with every symlink in its parent components
// replaced by its target inside the tree; the last component is kept as
// it is. Missing parents are fine: they are what an entry creates.
func (t *Tree) Resolve(name string) (string, error) {
	name = Clean(name)
	if name == "." {
		return ".", nil
	}
	dir, base := path.Split(name)
	parent, err := t.resolveDir(dir)
	if err != nil {
		return "", err
	}
	return join(parent, base), nil
}

// resolveDir resolves every component of p, symlinks included.
func (t *Tree) resolveDir(p string) (string, error) {
	rest := strings.Split(Clean(p), "/")
	cur := "."
	for hops := 0; len(rest) > 0; {
		comp := rest[0]
		rest = rest[1:]
		if comp == "." || comp == "" {
			continue
		}
		next := join(cur, comp)
		if t.realDirs[next] {
			cur = next
			continue
		}
		fi, err := t.root.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) {
			return join(next, strings.Join(rest, "/")), nil
		}
		if err != nil {
			return "", err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if hops++; hops > maxHops {
				return "", fmt.Errorf("resolving %s: %w", p, ErrLoop)
			}
			target, err := t.root.Readlink(next)
			if err != nil {
				return "", err
			}
			if !path.IsAbs(target) {
				target = path.Join(cur, target)
			}
			// Start again from the top with the target in front of what
			// is left: Clean stops any `..` at the tree's top.
			rest = append(strings.Split(Clean(target), "/"), rest...)
			cur = "."
		case fi.IsDir():
			t.realDirs[next] = true
			cur = next
		default:
			return "", fmt.Errorf("resolving %s: %s is not a directory", p, next)
		}
	}
	return cur, nil
}

func join(dir, name string) string {
	if dir == "." || dir == "" {
		if name == "" {
			return "."
		}
		return name
	}
	if name == "" {
		return dir
	}
	return dir + "/" + name
}

// Lstat describes the entry at name (parents resolved, the last component
// not followed).
func (t *Tree) Lstat(name string) (fs.FileInfo, error) {
	p, err := t.Resolve(name)
	if err != nil {
		return nil, err
	}
	return t.root.Lstat(p)
}

// ReadDir lists the directory at name (symlinks followed inside the tree).
func (t *Tree) ReadDir(name string) ([]fs.DirEntry, error) {
	p, err := t.resolveDir(name)
	if err != nil {
		return nil, err
	}
	f, err := t.root.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.ReadDir(-1)
}

// RemoveAll removes the entry at name and, for a directory, everything
// under it. A missing entry is not an error.
func (t *Tree) RemoveAll(name string) error {
	p, err := t.Resolve(name)
	if err != nil {
		return err
	}
	if p == "." {
		return fmt.Errorf("refusing to remove the top of the image tree")
	}
	t.forget()
	return t.root.RemoveAll(p)
}

// WriteFile replaces the file at name with data (a symlink there is
// replaced, never written through), creating missing parents.
func (t *Tree) WriteFile(name string, data []byte, perm fs.FileMode) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(perm), Size: int64(len(data)), ModTime: time.Now()}
	return t.Put(hdr, strings.NewReader(string(data)), PutOptions{})
}

// ReadFile reads the regular file at name (a symlink is refused).
func (t *Tree) ReadFile(name string) ([]byte, error) {
	f, err := t.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Symlink replaces whatever is at name with a symlink to target.
func (t *Tree) Symlink(target, name string) error {
	hdr := &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, ModTime: time.Now()}
	return t.Put(hdr, nil, PutOptions{})
}

// PutOptions steer Put.
type PutOptions struct {
	// KeepOwner applies the entry's uid and gid (as root builds an image).
	KeepOwner bool
}

// Put creates the entry hdr describes at hdr.Name, with r as a regular
// file's content: whatever non-directory is there is replaced (never
// written through, so a hard link elsewhere keeps its content), a
// directory where a non-directory goes is removed whole, and a directory
// entry over a directory updates it. Hard link targets are names in the
// tree. Ownership (with KeepOwner), modes including setuid, setgid and
// sticky, xattrs (PAX SCHILY.xattr.*) and times are kept; holes in a
// regular file's content stay holes.
func (t *Tree) Put(hdr *tar.Header, r io.Reader, o PutOptions) error {
	name, err := t.Resolve(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." && hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("%s: only a directory can be the top of the tree", hdr.Name)
	}
	perm := fs.FileMode(hdr.Mode).Perm()
	if hdr.Mode&unix.S_ISUID != 0 {
		perm |= fs.ModeSetuid
	}
	if hdr.Mode&unix.S_ISGID != 0 {
		perm |= fs.ModeSetgid
	}
	if hdr.Mode&unix.S_ISVTX != 0 {
		perm |= fs.ModeSticky
	}
	if name == "." {
		t.dirs = append(t.dirs, dirMeta{name, perm, hdr.ModTime})
		return nil // the top's metadata is the tree's own
	}
	dir, base := path.Split(name)
	pf, err := t.parent(path.Clean(dir))
	if err != nil {
		return err
	}
	pfd := int(pf.Fd())
	var st unix.Stat_t
	exists := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	isDir := exists && st.Mode&unix.S_IFMT == unix.S_IFDIR
	switch hdr.Typeflag {
	case tar.TypeDir:
		if !isDir {
			if exists {
				if err := unix.Unlinkat(pfd, base, 0); err != nil {
					return err
				}
			}
			if err := unix.Mkdirat(pfd, base, 0o755); err != nil {
				return err
			}
		}
		t.realDirs[name] = true
		t.dirs = append(t.dirs, dirMeta{name, perm, hdr.ModTime})
	case tar.TypeReg, tar.TypeChar, tar.TypeBlock, tar.TypeFifo, tar.TypeSymlink, tar.TypeLink:
		if isDir {
			t.forget()
			if err := t.root.RemoveAll(name); err != nil {
				return err
			}
			if pf, err = t.parent(path.Clean(dir)); err != nil {
				return err
			}
			pfd = int(pf.Fd())
		} else if exists {
			// Unlinked, never written through: a hard link elsewhere
			// keeps the old content.
			if err := unix.Unlinkat(pfd, base, 0); err != nil {
				return err
			}
		}
		if err := t.create(pfd, name, base, hdr, r); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%s: unsupported entry type %q", hdr.Name, hdr.Typeflag)
	}
	if hdr.Typeflag == tar.TypeLink {
		return nil // a second name for an inode whose metadata is set
	}
	return t.meta(pfd, name, base, hdr, perm, o)
}

func (t *Tree) create(pfd int, name, base string, hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeReg:
		fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("creating %s: %w", name, err)
		}
		f := os.NewFile(uintptr(fd), name)
		err = copySparse(f, r, hdr.Size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return fmt.Errorf("making symlink %s: %w", name, err)
		}
		return nil
	case tar.TypeLink:
		target, err := t.Resolve(hdr.Linkname)
		if err != nil {
			return err
		}
		tdir, tbase := path.Split(target)
		tf, err := t.root.Open(path.Clean(tdir))
		if err != nil {
			return fmt.Errorf("hard link to %s: %w", hdr.Linkname, err)
		}
		defer tf.Close()
		if err := unix.Linkat(int(tf.Fd()), tbase, pfd, base, 0); err != nil {
			return fmt.Errorf("hard link to %s: %w", hdr.Linkname, err)
		}
		return nil
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := unix.Mknodat(pfd, base, NodeMode(hdr), int(dev)); err != nil {
		return fmt.Errorf("making %s: %w", name, err)
	}
	return nil
}

// NodeMode is the mknod mode of a FIFO, character or block device entry:
// its type bits and permissions (setuid and such are set by chmod later).
func NodeMode(hdr *tar.Header) uint32 {
	mode := uint32(hdr.Mode & 0o777)
	switch hdr.Typeflag {
	case tar.TypeFifo:
		mode |= unix.S_IFIFO
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	default:
		mode |= unix.S_IFBLK
	}
	return mode
}

// Mknod makes a FIFO or device node at name in root, which os.Root cannot:
// with mknodat in the parent directory opened through root, under a name
// with no slash, so nothing outside root is reached.
func Mknod(root *os.Root, name string, mode uint32, dev uint64) error {
	parent, err := root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer parent.Close()
	return unix.Mknodat(int(parent.Fd()), path.Base(name), mode, int(dev))
}

// unixMode is perm as chmod takes it.
func unixMode(perm fs.FileMode) uint32 {
	m := uint32(perm.Perm())
	if perm&fs.ModeSetuid != 0 {
		m |= unix.S_ISUID
	}
	if perm&fs.ModeSetgid != 0 {
		m |= unix.S_ISGID
	}
	if perm&fs.ModeSticky != 0 {
		m |= unix.S_ISVTX
	}
	return m
}

// meta sets ownership, mode, xattrs and times of the entry base in the
// directory pfd. Chown comes before chmod, which it would otherwise clear
// setuid and setgid from; a symlink is never followed (and has no mode).
func (t *Tree) meta(pfd int, name, base string, hdr *tar.Header, perm fs.FileMode, o PutOptions) error {
	symlink := hdr.Typeflag == tar.TypeSymlink
	if o.KeepOwner {
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %s: %w", name, err)
		}
	}
	if !symlink && hdr.Typeflag != tar.TypeDir {
		if err := unix.Fchmodat(pfd, base, unixMode(perm), 0); err != nil {
			return fmt.Errorf("chmod %s: %w", name, err)
		}
	}
	if err := setXattrs(pfd, name, base, hdr, symlink); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeDir {
		return setTimes(pfd, base, hdr.ModTime)
	}
	return nil
}

// setXattrs applies the entry's extended attributes through
// /proc/self/fd/<parent>/<base> with lsetxattr: the parent was opened
// through the root and the last component is not followed, so nothing is
// opened (a device node, a FIFO) and nothing outside is reached.
func setXattrs(pfd int, name, base string, hdr *tar.Header, symlink bool) error {
	const prefix = "SCHILY.xattr."
	p := "/proc/self/fd/" + strconv.Itoa(pfd) + "/" + base
	for k, v := range hdr.PAXRecords {
		key, ok := strings.CutPrefix(k, prefix)
		if !ok || symlink && strings.HasPrefix(key, "user.") {
			continue // the kernel allows no user.* xattrs on symlinks
		}
		if err := unix.Lsetxattr(p, key, []byte(v), 0); err != nil {
			return fmt.Errorf("setting xattr %s on %s: %w", key, name, err)
		}
	}
	return nil
}

// setTimes sets an entry's access and modification times without
// following a symlink.
func setTimes(pfd int, base string, mtime time.Time) error {
	if mtime.IsZero() {
		return nil
	}
	ts := unix.NsecToTimespec(mtime.UnixNano())
	return unix.UtimesNanoAt(pfd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// Finish sets the modes and times of the directory entries Put made, last
// entries first. Directories removed since are skipped.
func (t *Tree) Finish(o PutOptions) error {
	for i := len(t.dirs) - 1; i >= 0; i-- {
		d := t.dirs[i]
		fi, err := t.root.Lstat(d.name)
		if err != nil || !fi.IsDir() {
			continue
		}
		if err := t.root.Chmod(d.name, d.mode); err != nil {
			return err
		}
		if d.mtime.IsZero() {
			continue
		}
		if err := t.root.Chtimes(d.name, d.mtime, d.mtime); err != nil {
			return err
		}
	}
	t.dirs = nil
	return nil
}

// copySparse writes size bytes of r to f, seeking over blocks of zeros so
// that a sparse file stays sparse.
func copySparse(f *os.File, r io.Reader, size int64) error {
	const block = 4096
	buf := make([]byte, 64<<10)
	var off int64
	for off < size {
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), size-off)])
		if n > 0 {
			for i := 0; i < n; i += block {
				chunk := buf[i:min(i+block, n)]
				if !allZero(chunk) {
					if _, werr := f.WriteAt(chunk, off+int64(i)); werr != nil {
						return werr
					}
				}
			}
			off += int64(n)
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return fmt.Errorf("short content: %d of %d bytes", off, size)
			}
			return err
		}
	}
	return f.Truncate(size)
}

var zeroBlock [4096]byte

func allZero(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }

// Open opens the regular file at name for reading (a symlink there is
// refused, not followed).
func (t *Tree) Open(name string) (*os.File, error) {
	p, err := t.Resolve(name)
	if err != nil {
		return nil, err
	}
	fi, err := t.root.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("opening /%s: not a regular file", p)
	}
	return t.root.Open(p)
}

// MoveOut moves the file or directory at name out of the tree to the host
// path dst (whose parent must exist), copying when they are on different
// filesystems. name is resolved inside the tree first, and a symlink
// there is refused, so the move takes only what is in the tree.
func (t *Tree) MoveOut(name, dst string) error {
	p, err := t.Resolve(name)
	if err != nil {
		return err
	}
	fi, err := t.root.Lstat(p)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 || p == "." {
		return fmt.Errorf("moving /%s out of the image tree: not a file or directory", p)
	}
	src := filepath.Join(t.dir, filepath.FromSlash(p))
	err = os.Rename(src, dst)
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	if err := copyOut(src, dst); err != nil {
		return err
	}
	return t.root.RemoveAll(p)
}

// copyOut copies directories, regular files and symlinks (as symlinks)
// from src to a new dst, keeping permission bits: what a kernel or its
// modules are made of.
func copyOut(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, fi.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		}
		return nil
	})
}
