package wsstream

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha1" //nolint:gosec // git's index checksum in sha1 repositories, not a security use
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// UnpackOptions shape an unpack.
type UnpackOptions struct {
	// Format is the repository's object format: "sha1" or "sha256".
	Format string
	// ReadOnly writes working-tree files without write permission and
	// makes its directories read-only once everything is in (the top
	// directory stays as it is: the caller still renames it).
	ReadOnly bool
	// Workers write files in parallel (0: two per CPU). The kernel's work
	// per file is what costs; several writers keep every vCPU busy.
	Workers int
}

const (
	inlineMax = 256 << 10 // larger files are written by the reader as they stream
	batchMax  = 64        // files handed to a worker at once
	batchSize = 1 << 20   // bytes of content per batch, at most
	dirFDMax  = 512       // directories kept open for *at calls
)

// statData is what git's index keeps of a file to tell it is unchanged.
type statData struct {
	ctimeS, ctimeN, mtimeS, mtimeN, dev, ino, uid, gid, size uint32
}

func statOf(st *unix.Stat_t) statData {
	return statData{
		ctimeS: uint32(st.Ctim.Sec), ctimeN: uint32(st.Ctim.Nsec),
		mtimeS: uint32(st.Mtim.Sec), mtimeN: uint32(st.Mtim.Nsec),
		dev: uint32(st.Dev), ino: uint32(st.Ino), uid: st.Uid, gid: st.Gid, size: uint32(st.Size),
	}
}

// entry is a working-tree entry on its way: where it goes and, once
// written, its stat data.
type entry struct {
	TreeEntry
	dirfd int    // its directory, or the top
	name  string // relative to dirfd
	st    statData
	data  []byte // in a batch: the content
	done  bool
}

type unpacker struct {
	dir   string
	o     UnpackOptions
	top   int // fd of dir
	tree  []entry
	dirs  []string // working-tree directories made, relative, parents first
	dirFD map[string]int

	// The workers, started at the contents and waited for at the end of
	// the stream: git files after the contents arrive while they write.
	batches chan []*entry
	wg      sync.WaitGroup

	mu  sync.Mutex
	err error
}

func (u *unpacker) fail(err error) {
	u.mu.Lock()
	if u.err == nil {
		u.err = err
	}
	u.mu.Unlock()
}

func (u *unpacker) failed() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// Unpack reads a workspace stream into dir, an empty directory, and writes
// dir/.git/index last. The git directory's files (HEAD, config, refs,
// objects) come in the stream; Unpack makes the directories every
// repository has.
func Unpack(ctx context.Context, r io.Reader, dir string, o UnpackOptions) (err error) {
	n, err := oidLen(o.Format)
	if err != nil {
		return err
	}
	for _, d := range []string{"objects/info", "objects/pack", "refs/heads", "refs/tags", "info"} {
		if err := os.MkdirAll(filepath.Join(dir, ".git", d), 0o777); err != nil {
			return fmt.Errorf("making the git directory: %w", err)
		}
	}
	// Little is allocated that lives long; collecting rarely saves an
	// emulated CPU real time.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		return fmt.Errorf("reading the workspace stream: %w", err)
	}
	defer zr.Close()
	top, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	u := &unpacker{dir: dir, o: o, top: top, dirFD: map[string]int{"": top}}
	defer func() {
		for _, fd := range u.dirFD {
			unix.Close(fd)
		}
	}()
	index, err := u.read(ctx, tar.NewReader(bufio.NewReaderSize(zr, 1<<20)), n)
	if u.batches != nil {
		close(u.batches)
		u.wg.Wait()
	}
	if err != nil {
		return err
	}
	if err := u.failed(); err != nil {
		return err
	}
	if index == nil {
		return ErrNoIndex
	}
	if err := u.writeIndex(index, n); err != nil {
		return err
	}
	if o.ReadOnly {
		for _, d := range u.dirs {
			var st unix.Stat_t
			if err := unix.Fstatat(top, d, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("making %s read-only: %w", d, err)
			}
			if err := unix.Fchmodat(top, d, st.Mode&0o7555, 0); err != nil {
				return fmt.Errorf("making %s read-only: %w", d, err)
			}
		}
	}
	return nil
}

// read walks the tar.
func (u *unpacker) read(ctx context.Context, tr *tar.Reader, oidBytes int) ([]IndexEntry, error) {
	var index []IndexEntry
	var haveTree, haveData bool
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if haveTree && !haveData {
				return nil, errors.New("the workspace stream ends before the working tree's contents")
			}
			return index, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the workspace stream: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("entry %q of the workspace stream is not a regular file", h.Name)
		}
		switch {
		case h.Name == indexName && index == nil:
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("reading the index list: %w", err)
			}
			if index, err = parseIndex(b, oidBytes); err != nil {
				return nil, err
			}
		case h.Name == treeName && !haveTree:
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("reading the working tree's list: %w", err)
			}
			if err := u.parseTree(b, oidBytes); err != nil {
				return nil, err
			}
			if err := u.makeDirs(); err != nil {
				return nil, err
			}
			haveTree = true
		case h.Name == dataName && haveTree && !haveData:
			if err := u.writeTree(ctx, tr, h.Size); err != nil {
				return nil, err
			}
			haveData = true
		case strings.HasPrefix(h.Name, gitPrefix):
			if err := u.gitFile(h, tr); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("unexpected entry %q in the workspace stream", h.Name)
		}
	}
}

func (u *unpacker) gitFile(h *tar.Header, tr io.Reader) error {
	name := strings.TrimPrefix(h.Name, gitPrefix)
	if err := checkPath(name, false); err != nil {
		return err
	}
	full := filepath.Join(u.dir, ".git", name)
	if err := os.MkdirAll(filepath.Dir(full), 0o777); err != nil {
		return fmt.Errorf("writing .git/%s: %w", name, err)
	}
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, os.FileMode(h.Mode)&0o777)
	if err != nil {
		return fmt.Errorf("writing .git/%s: %w", name, err)
	}
	if _, err := io.Copy(f, tr); err != nil {
		f.Close()
		return fmt.Errorf("writing .git/%s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing .git/%s: %w", name, err)
	}
	return nil
}

// parseTree reads the working tree's list: "MODE OID SIZE\tPATH\0".
func (u *unpacker) parseTree(b []byte, oidBytes int) error {
	seen := map[string]bool{}
	for _, rec := range bytes.Split(b, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		meta, p, ok := strings.Cut(string(rec), "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 3 {
			return fmt.Errorf("bad working-tree list entry %q", rec)
		}
		m, err1 := strconv.ParseUint(f[0], 8, 32)
		raw, err2 := hex.DecodeString(f[1])
		size, err3 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || len(raw) != oidBytes || size < 0 {
			return fmt.Errorf("bad working-tree list entry %q", rec)
		}
		if err := checkPath(p, true); err != nil {
			return err
		}
		switch {
		case m == ModeFile, m == ModeExec, m == ModeSymlink, m == ModeGitlink && size == 0:
		default:
			return fmt.Errorf("working-tree entry %s has mode %o and size %d", p, m, size)
		}
		if seen[p] {
			return fmt.Errorf("the working-tree list names %s twice", p)
		}
		seen[p] = true
		u.tree = append(u.tree, entry{TreeEntry: TreeEntry{Mode: uint32(m), OID: f[1], Size: size, Path: p}})
	}
	return nil
}

// makeDirs makes every directory the tree needs, and the gitlinks' empty
// directories, before any content arrives; the busiest directories stay
// open so the workers create files with *at calls beside them.
func (u *unpacker) makeDirs() error {
	made := map[string]bool{"": true}
	var mk func(d string) error
	mk = func(d string) error {
		if made[d] {
			return nil
		}
		if err := mk(parentOf(d)); err != nil {
			return err
		}
		if err := unix.Mkdirat(u.top, d, 0o777); err != nil {
			return fmt.Errorf("making directory %s: %w", d, err)
		}
		made[d] = true
		u.dirs = append(u.dirs, d)
		return nil
	}
	for i := range u.tree {
		e := &u.tree[i]
		d := parentOf(e.Path)
		if err := mk(d); err != nil {
			return err
		}
		if e.Mode == ModeGitlink {
			// A submodule: an empty directory, as git checks one out.
			if err := mk(e.Path); err != nil {
				return err
			}
			var st unix.Stat_t
			if err := unix.Fstatat(u.top, e.Path, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("making %s: %w", e.Path, err)
			}
			e.st, e.done = statOf(&st), true
			continue
		}
		fd, ok := u.dirFD[d]
		if !ok && len(u.dirFD) < dirFDMax {
			var err error
			if fd, err = unix.Openat(u.top, d, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0); err != nil {
				return fmt.Errorf("opening directory %s: %w", d, err)
			}
			u.dirFD[d], ok = fd, true
		}
		if ok {
			e.dirfd, e.name = fd, path.Base(e.Path)
		} else {
			e.dirfd, e.name = u.top, e.Path
		}
	}
	return nil
}

func parentOf(p string) string {
	if d := path.Dir(p); d != "." {
		return d
	}
	return ""
}

// writeTree reads the contents in list order and hands them to the
// workers in batches; a large file is written here as it streams. The
// workers go on after it returns.
func (u *unpacker) writeTree(ctx context.Context, r io.Reader, size int64) error {
	var total int64
	for _, e := range u.tree {
		total += e.Size
	}
	if total != size {
		return fmt.Errorf("the working tree's contents are %d bytes, but its list says %d", size, total)
	}
	workers := u.o.Workers
	if workers <= 0 {
		workers = 2 * runtime.NumCPU()
	}
	batches := make(chan []*entry, workers)
	u.batches = batches
	for range workers {
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			for b := range batches {
				for _, e := range b {
					if u.failed() != nil {
						break
					}
					if err := u.write(e, nil); err != nil {
						u.fail(err)
					}
					e.data = nil
				}
			}
		}()
	}
	var batch []*entry
	var bytesIn int
	flush := func() {
		if len(batch) > 0 {
			batches <- batch
			batch, bytesIn = nil, 0
		}
	}
	for i := range u.tree {
		e := &u.tree[i]
		if e.done {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := u.failed(); err != nil {
			return err
		}
		if e.Size > inlineMax {
			if err := u.write(e, io.LimitReader(r, e.Size)); err != nil {
				return err
			}
			continue
		}
		e.data = make([]byte, e.Size)
		if _, err := io.ReadFull(r, e.data); err != nil {
			return fmt.Errorf("reading %s from the workspace stream: %w", e.Path, err)
		}
		batch = append(batch, e)
		bytesIn += len(e.data)
		if len(batch) >= batchMax || bytesIn >= batchSize {
			flush()
		}
	}
	flush()
	return nil
}

// write makes one file or symlink with the permissions git gives it (0666
// or 0777 under the umask) and keeps its stat data for the index. Content
// comes from e.data, or from r for a large file.
func (u *unpacker) write(e *entry, r io.Reader) error {
	var st unix.Stat_t
	if e.Mode == ModeSymlink {
		target := e.data
		if r != nil {
			var err error
			if target, err = io.ReadAll(r); err != nil {
				return fmt.Errorf("reading %s from the workspace stream: %w", e.Path, err)
			}
		}
		if err := unix.Symlinkat(string(target), e.dirfd, e.name); err != nil {
			return fmt.Errorf("writing %s: %w", e.Path, err)
		}
		if err := unix.Fstatat(e.dirfd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("writing %s: %w", e.Path, err)
		}
		e.st, e.done = statOf(&st), true
		return nil
	}
	perm := uint32(0o666)
	if e.Mode == ModeExec {
		perm = 0o777
	}
	if u.o.ReadOnly {
		perm &^= 0o222
	}
	fd, err := unix.Openat(e.dirfd, e.name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return fmt.Errorf("writing %s: %w", e.Path, err)
	}
	werr := writeAll(fd, e.data, r)
	if werr == nil {
		werr = unix.Fstat(fd, &st)
	}
	if cerr := unix.Close(fd); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("writing %s: %w", e.Path, werr)
	}
	e.st, e.done = statOf(&st), true
	return nil
}

func writeAll(fd int, b []byte, r io.Reader) error {
	if r != nil {
		buf := make([]byte, 1<<20)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if werr := writeAll(fd, buf[:n], nil); werr != nil {
					return werr
				}
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// parseIndex reads the index list: "MODE OID\tPATH\0" per entry.
func parseIndex(b []byte, oidBytes int) ([]IndexEntry, error) {
	var out []IndexEntry
	for _, rec := range bytes.Split(b, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		meta, p, ok := strings.Cut(string(rec), "\t")
		mode, oid, ok2 := strings.Cut(meta, " ")
		m, err := strconv.ParseUint(mode, 8, 32)
		raw, herr := hex.DecodeString(oid)
		if !ok || !ok2 || err != nil || herr != nil || len(raw) != oidBytes {
			return nil, fmt.Errorf("bad index list entry %q", rec)
		}
		if err := checkPath(p, true); err != nil {
			return nil, err
		}
		switch m {
		case ModeFile, ModeExec, ModeSymlink, ModeGitlink:
		default:
			return nil, fmt.Errorf("index list entry %s has mode %o", p, m)
		}
		out = append(out, IndexEntry{Mode: uint32(m), OID: oid, Path: p})
	}
	return out, nil
}

// writeIndex writes git's index (version 2, no extensions) for the staged
// entries. An entry whose working-tree file holds the same object gets the
// file's stat data, so git trusts it without reading it; any other entry
// gets none, so git looks at that file and finds it modified or deleted.
func (u *unpacker) writeIndex(entries []IndexEntry, oidBytes int) error {
	sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	written := make(map[string]*entry, len(u.tree))
	for i := range u.tree {
		if u.tree[i].done {
			written[u.tree[i].Path] = &u.tree[i]
		}
	}
	newHash := sha1.New //nolint:gosec // see the import
	if oidBytes == 32 {
		newHash = sha256.New
	}
	h := newHash()
	lock := filepath.Join(u.dir, ".git", "index.lock")
	f, err := os.OpenFile(lock, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return fmt.Errorf("writing the index: %w", err)
	}
	defer os.Remove(lock)
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<16)
	be := binary.BigEndian
	var hdr [12]byte
	copy(hdr[:], "DIRC")
	be.PutUint32(hdr[4:], 2)
	be.PutUint32(hdr[8:], uint32(len(entries)))
	_, _ = bw.Write(hdr[:])
	fixed := 40 + oidBytes + 2
	buf := make([]byte, 0, 256)
	for i, e := range entries {
		if i > 0 && entries[i-1].Path == e.Path {
			f.Close()
			return fmt.Errorf("the index list names %s twice", e.Path)
		}
		var st statData
		if w, ok := written[e.Path]; ok && w.OID == e.OID && w.Mode == e.Mode {
			st = w.st
		}
		buf = buf[:0]
		for _, v := range []uint32{st.ctimeS, st.ctimeN, st.mtimeS, st.mtimeN, st.dev, st.ino, e.Mode, st.uid, st.gid, st.size} {
			buf = be.AppendUint32(buf, v)
		}
		raw, _ := hex.DecodeString(e.OID)
		buf = append(buf, raw...)
		buf = be.AppendUint16(buf, uint16(min(len(e.Path), 0xfff)))
		buf = append(buf, e.Path...)
		total := (fixed + len(e.Path) + 8) &^ 7
		buf = append(buf, make([]byte, total-fixed-len(e.Path))...)
		_, _ = bw.Write(buf)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("writing the index: %w", err)
	}
	if _, err := f.Write(h.Sum(nil)); err != nil {
		f.Close()
		return fmt.Errorf("writing the index: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the index: %w", err)
	}
	if err := os.Rename(lock, filepath.Join(u.dir, ".git", "index")); err != nil {
		return fmt.Errorf("writing the index: %w", err)
	}
	return nil
}
