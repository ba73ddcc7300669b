// Package bundle is the file format that carries one banger image between
// hosts: a zstd-compressed tar whose first entry, manifest.json, lists
// every other file with its size and sha256, then vmlinuz, rootfs.ext4 and
// the kernel's modules under modules/<kver>/. Its manifest can be read
// without reading the rest (the CLI names a loaded image from it); the
// image service writes bundles and checks each file as it arrives.
package bundle

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// The format's names.
const (
	Format       = "banger-bundle/1"
	ManifestName = "manifest.json"
	Kernel       = "vmlinuz"
	Rootfs       = "rootfs.ext4"
	// Initrd is an initramfs of the image's own, optional: it is
	// unpacked before banger's, whose /init boots the VM.
	Initrd      = "initrd"
	Modules     = "modules"
	manifestMax = 16 << 20
)

// Manifest is a bundle's first entry.
type Manifest struct {
	Format        string `json:"format"`
	Name          string `json:"name"`
	Source        string `json:"source,omitempty"`
	KernelVersion string `json:"kernel_version,omitempty"`
	// Config is the image's runtime config (an OCI image's), as the image
	// service writes it.
	Config    json.RawMessage `json:"config,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	Files     []File          `json:"files"`
}

// File is one file of a bundle.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

var (
	// ErrNotBundle means a file is not a banger bundle at all.
	ErrNotBundle = errors.New("not a banger bundle")
	// ErrCorrupt means a bundle's file does not match its manifest, or the
	// bundle ends early.
	ErrCorrupt = errors.New("the bundle is corrupt")
)

// ValidName says whether name may be a file of a bundle.
func ValidName(name string) bool {
	if name == Kernel || name == Rootfs || name == Initrd {
		return true
	}
	rest, ok := strings.CutPrefix(name, Modules+"/")
	if !ok || rest == "" || path.Clean(name) != name {
		return false
	}
	for _, c := range strings.Split(rest, "/") {
		if c == ".." || c == "." {
			return false
		}
	}
	return true
}

// ReadManifest reads and checks the manifest, the tar's first entry.
func ReadManifest(tr *tar.Reader) (Manifest, error) {
	hdr, err := tr.Next()
	if err != nil {
		return Manifest{}, fmt.Errorf("%w (a zstd-compressed tar starting with %s): %w", ErrNotBundle, ManifestName, err)
	}
	if hdr.Name != ManifestName || hdr.Size > manifestMax {
		return Manifest{}, fmt.Errorf("%w: it starts with %q, not %s", ErrNotBundle, hdr.Name, ManifestName)
	}
	var m Manifest
	if err := json.NewDecoder(io.LimitReader(tr, manifestMax)).Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: its manifest is not valid JSON: %w", ErrNotBundle, err)
	}
	if m.Format != Format {
		return Manifest{}, fmt.Errorf("%w: its format is %q; this banger reads %q", ErrNotBundle, m.Format, Format)
	}
	seen := map[string]bool{}
	for _, f := range m.Files {
		if !ValidName(f.Name) || seen[f.Name] || f.Size < 0 || len(f.SHA256) != 64 {
			return Manifest{}, fmt.Errorf("%w: its manifest lists a bad file %q", ErrNotBundle, f.Name)
		}
		seen[f.Name] = true
	}
	if !seen[Kernel] || !seen[Rootfs] {
		return Manifest{}, fmt.Errorf("%w: its manifest lists no %s or no %s", ErrNotBundle, Kernel, Rootfs)
	}
	return m, nil
}

// NewReader starts reading a bundle: the tar inside the compression.
// Close the decoder when done.
func NewReader(r io.Reader) (*tar.Reader, *zstd.Decoder, error) {
	// One block at a time: what arrived is delivered before a later block
	// turns out broken, so a truncated bundle names the file it cut.
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the bundle: %w", err)
	}
	return tar.NewReader(zr), zr, nil
}

// Peek reads only the manifest of the bundle r starts.
func Peek(r io.Reader) (Manifest, error) {
	tr, zr, err := NewReader(r)
	if err != nil {
		return Manifest{}, err
	}
	defer zr.Close()
	return ReadManifest(tr)
}

// NewWriter starts writing a bundle to w: the manifest, then each file in
// the manifest's order with AddFile, then Close.
func NewWriter(w io.Writer, m Manifest) (*Writer, error) {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nil, fmt.Errorf("writing the bundle: %w", err)
	}
	bw := &Writer{zw: zw, tw: tar.NewWriter(zw)}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("writing the bundle: %w", err)
	}
	if err := bw.tw.WriteHeader(&tar.Header{Name: ManifestName, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(mb)), ModTime: time.Now()}); err != nil {
		return nil, fmt.Errorf("writing the bundle: %w", err)
	}
	if _, err := bw.tw.Write(mb); err != nil {
		return nil, fmt.Errorf("writing the bundle: %w", err)
	}
	return bw, nil
}

// Writer writes a bundle.
type Writer struct {
	zw *zstd.Encoder
	tw *tar.Writer
}

// AddFile writes one file of size bytes from r.
func (w *Writer) AddFile(name string, size int64, r io.Reader) error {
	if err := w.tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size}); err != nil {
		return fmt.Errorf("writing the bundle: %w", err)
	}
	if _, err := io.CopyN(w.tw, r, size); err != nil {
		return fmt.Errorf("writing %s to the bundle: %w", name, err)
	}
	return nil
}

// Close finishes the bundle.
func (w *Writer) Close() error {
	if err := w.tw.Close(); err != nil {
		return fmt.Errorf("writing the bundle: %w", err)
	}
	if err := w.zw.Close(); err != nil {
		return fmt.Errorf("writing the bundle: %w", err)
	}
	return nil
}
