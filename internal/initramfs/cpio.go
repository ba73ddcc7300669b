package initramfs

import (
	"fmt"
	"io"
	"path"
	"strings"
)

// cpio file types, as in the newc header's mode field.
const (
	typeDir  = 0o040000
	typeReg  = 0o100000
	typeChar = 0o020000
)

// cpioWriter writes a newc ("070701") cpio archive, the format the kernel
// unpacks into its initial rootfs. Every entry is owned by root with mtime
// 0, so the same inputs give the same bytes.
type cpioWriter struct {
	w    io.Writer
	ino  uint32
	dirs map[string]bool
	err  error
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, dirs: map[string]bool{}}
}

// header writes one entry's header and name, padded to four bytes.
func (c *cpioWriter) header(name string, mode, size, devMajor, devMinor uint32) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := uint32(1)
	if mode&0o170000 == typeDir {
		nlink = 2
	}
	// Fields: magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize (with its NUL), check.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, devMajor, devMinor, len(name)+1, 0)
	c.write([]byte(hdr + name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

// pad writes the zeros that bring n bytes up to a multiple of four.
func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// Dir adds a directory and, first, its missing parents.
func (c *cpioWriter) Dir(name string, perm uint32) {
	name = clean(name)
	if name == "" || c.dirs[name] {
		return
	}
	if parent := path.Dir(name); parent != "." {
		c.Dir(parent, 0o755)
	}
	c.dirs[name] = true
	c.header(name, typeDir|perm, 0, 0, 0)
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm, major, minor uint32) {
	name = clean(name)
	c.Dir(path.Dir(name), 0o755)
	c.header(name, typeChar|perm, 0, major, minor)
}

// File adds a regular file of size bytes read from r.
func (c *cpioWriter) File(name string, perm uint32, size int64, r io.Reader) {
	name = clean(name)
	if size < 0 || size > 0xFFFFFFFF {
		c.fail(fmt.Errorf("%s is %d bytes, more than a cpio entry holds", name, size))
		return
	}
	c.Dir(path.Dir(name), 0o755)
	c.header(name, typeReg|perm, uint32(size), 0, 0)
	if c.err != nil {
		return
	}
	n, err := io.CopyN(c.w, r, size)
	if err != nil {
		c.fail(fmt.Errorf("copying %s into the archive (%d of %d bytes): %w", name, n, size, err))
		return
	}
	c.pad(int(size % 4))
}

func (c *cpioWriter) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// Close writes the trailer entry and returns the first error met.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0, 0, 0)
	return c.err
}

// clean makes an archive name: slash-separated, relative, no dots.
func clean(name string) string {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	return name
}
