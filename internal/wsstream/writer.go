package wsstream

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Writer writes a workspace stream: Index, GitFile for each git file, then
// Tree and its contents, then Close.
type Writer struct {
	zw *zstd.Encoder
	tw *tar.Writer
	n  int64
	// Progress, when set, is told the content bytes written so far
	// (before compression).
	Progress func(int64)
}

// NewWriter compresses at zstd's fastest level: the guest decompresses
// cheaply, and text trees shrink several times on a link that an emulated
// guest makes slow.
func NewWriter(w io.Writer) (*Writer, error) {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		return nil, fmt.Errorf("starting the workspace stream: %w", err)
	}
	return &Writer{zw: zw, tw: tar.NewWriter(zw)}, nil
}

// Index writes the staged entries the guest's index gets.
func (w *Writer) Index(entries []IndexEntry) error {
	var b bytes.Buffer
	for _, e := range entries {
		if err := checkPath(e.Path, true); err != nil {
			return err
		}
		fmt.Fprintf(&b, "%o %s\t%s\x00", e.Mode, e.OID, e.Path)
	}
	return w.put(indexName, 0o600, int64(b.Len()), &b)
}

// GitFile writes a file of the git directory (name relative to it).
func (w *Writer) GitFile(name string, mode, size int64, r io.Reader) error {
	if err := checkPath(name, false); err != nil {
		return err
	}
	return w.put(gitPrefix+name, mode, size, r)
}

// Tree writes the working tree's list and returns where its contents go:
// each entry's Size bytes, in the list's order, exactly.
func (w *Writer) Tree(entries []TreeEntry) (io.Writer, error) {
	var b bytes.Buffer
	var total int64
	for _, e := range entries {
		if err := checkPath(e.Path, true); err != nil {
			return nil, err
		}
		switch e.Mode {
		case ModeFile, ModeExec, ModeSymlink:
		case ModeGitlink:
			if e.Size != 0 {
				return nil, fmt.Errorf("gitlink %s has content", e.Path)
			}
		default:
			return nil, fmt.Errorf("%s has mode %o, which git does not write", e.Path, e.Mode)
		}
		if e.Size < 0 {
			return nil, fmt.Errorf("%s has a negative size", e.Path)
		}
		fmt.Fprintf(&b, "%o %s %d\t%s\x00", e.Mode, e.OID, e.Size, e.Path)
		total += e.Size
	}
	if err := w.put(treeName, 0o600, int64(b.Len()), &b); err != nil {
		return nil, err
	}
	if err := w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: dataName, Mode: 0o600, Size: total}); err != nil {
		return nil, fmt.Errorf("writing the workspace stream: %w", err)
	}
	return &counted{w: w}, nil
}

// counted passes contents to the tar and counts them for Progress.
type counted struct{ w *Writer }

func (c *counted) Write(p []byte) (int, error) {
	n, err := c.w.tw.Write(p)
	c.w.add(int64(n))
	if errors.Is(err, tar.ErrWriteTooLong) {
		err = errors.New("more working-tree content than the list says")
	}
	return n, err
}

func (w *Writer) add(n int64) {
	w.n += n
	if w.Progress != nil {
		w.Progress(w.n)
	}
}

func (w *Writer) put(name string, mode, size int64, r io.Reader) error {
	if err := w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: size}); err != nil {
		return fmt.Errorf("writing the workspace stream: %w", err)
	}
	if _, err := io.CopyN(w.tw, r, size); err != nil {
		return fmt.Errorf("writing %s to the workspace stream: %w", name, err)
	}
	w.add(size)
	return nil
}

// Close ends the stream.
func (w *Writer) Close() error {
	if err := w.tw.Close(); err != nil {
		return fmt.Errorf("finishing the workspace stream: %w", err)
	}
	if err := w.zw.Close(); err != nil {
		return fmt.Errorf("finishing the workspace stream: %w", err)
	}
	return nil
}
