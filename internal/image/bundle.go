package image

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/banger-dev/banger/internal/bundle"
	"github.com/banger-dev/banger/internal/host/disk"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/oci"
	"github.com/banger-dev/banger/internal/op"
	"github.com/banger-dev/banger/internal/rootfs"
)

// bundleFiles lists an image's files as a bundle names them.
func bundleFiles(im model.Image) ([][2]string, error) {
	files := [][2]string{{bundle.Kernel, im.KernelPath}, {bundle.Rootfs, im.RootfsPath}}
	if im.InitrdPath != "" {
		files = append(files, [2]string{bundle.Initrd, im.InitrdPath})
	}
	if im.ModulesPath == "" {
		return files, nil
	}
	top := bundle.Modules + "/" + filepath.Base(im.ModulesPath)
	err := filepath.WalkDir(im.ModulesPath, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err // links (build, source) are not needed
		}
		rel, _ := filepath.Rel(im.ModulesPath, p)
		files = append(files, [2]string{top + "/" + filepath.ToSlash(rel), p})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the image's modules: %w", err)
	}
	return files, nil
}

// Export writes image name as a bundle to w. Every file is hashed first:
// the manifest leads the bundle, so that a load checks each file as it
// arrives.
func (s *Service) Export(ctx context.Context, name string, w io.Writer) error {
	im, err := s.store.GetImage(ctx, name)
	if err != nil {
		return err
	}
	files, err := bundleFiles(im)
	if err != nil {
		return err
	}
	m := bundle.Manifest{Format: bundle.Format, Name: im.Name, Source: im.Source, CreatedAt: im.CreatedAt}
	if im.ModulesPath != "" {
		m.KernelVersion = filepath.Base(im.ModulesPath)
	}
	if im.Config != nil {
		m.Config, _ = json.Marshal(im.Config)
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		sum, size, err := disk.Sum(f[1])
		if err != nil {
			return fmt.Errorf("reading %s: %w", f[1], err)
		}
		m.Files = append(m.Files, bundle.File{Name: f[0], Size: size, SHA256: sum})
	}
	bw, err := bundle.NewWriter(w, m)
	if err != nil {
		return err
	}
	for i, f := range files {
		if err := addBundleFile(ctx, bw, f[0], f[1], m.Files[i].Size); err != nil {
			return err
		}
	}
	return bw.Close()
}

func addBundleFile(ctx context.Context, bw *bundle.Writer, name, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("reading %s: %w", src, err)
	}
	defer f.Close()
	if err := bw.AddFile(name, size, oci.ContextReader(ctx, f)); err != nil {
		return fmt.Errorf("%w (did the image change meanwhile?)", err)
	}
	return nil
}

// corrupt is a refused bundle: invalid input, naming what failed.
func corrupt(format string, a ...any) error {
	return model.Errorf(model.ErrInvalid, "%v: %s; download or export it again", bundle.ErrCorrupt, fmt.Sprintf(format, a...))
}

// ReceiveBundle writes a bundle's files into dir (see RegisterDir),
// checking each against the manifest as it arrives, and returns the
// manifest. A bundle with a file that does not match, one missing, or one
// the manifest does not list is refused, naming the file; the caller
// removes dir then.
func ReceiveBundle(r io.Reader, dir string) (bundle.Manifest, error) {
	tr, zr, err := bundle.NewReader(r)
	if err != nil {
		return bundle.Manifest{}, err
	}
	defer zr.Close()
	m, err := bundle.ReadManifest(tr)
	if err != nil {
		return bundle.Manifest{}, model.Errorf(model.ErrInvalid, "%v", err)
	}
	want := map[string]bundle.File{}
	for _, f := range m.Files {
		want[f.Name] = f
	}
	t, err := rootfs.Open(dir)
	if err != nil {
		return bundle.Manifest{}, err
	}
	defer t.Close()
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return bundle.Manifest{}, corrupt("reading it after %d of its %d files: %v", len(seen), len(want), err)
		}
		f, ok := want[hdr.Name]
		if !ok || seen[hdr.Name] || hdr.Typeflag != tar.TypeReg {
			return bundle.Manifest{}, corrupt("it holds %q, which its manifest does not list", hdr.Name)
		}
		if hdr.Size != f.Size {
			return bundle.Manifest{}, corrupt("%s is %d bytes, its manifest says %d", f.Name, hdr.Size, f.Size)
		}
		if d := path.Dir(f.Name); d != "." {
			if err := t.Put(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil, rootfs.PutOptions{}); err != nil {
				return bundle.Manifest{}, fmt.Errorf("receiving %s: %w", f.Name, err)
			}
		}
		h := sha256.New()
		if err := t.Put(&tar.Header{Name: f.Name, Typeflag: tar.TypeReg, Mode: 0o644, Size: f.Size}, io.TeeReader(tr, h), rootfs.PutOptions{}); err != nil {
			return bundle.Manifest{}, corrupt("reading %s: %v", f.Name, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
			return bundle.Manifest{}, corrupt("%s has sha256 %s, its manifest says %s", f.Name, got, f.SHA256)
		}
		seen[f.Name] = true
	}
	for _, f := range m.Files {
		if !seen[f.Name] {
			return bundle.Manifest{}, corrupt("it ends before %s (truncated?)", f.Name)
		}
	}
	if err := t.Finish(rootfs.PutOptions{}); err != nil {
		return bundle.Manifest{}, err
	}
	return m, nil
}

// Load starts an operation that registers a received bundle (see
// ReceiveBundle) as image name, with a registration's checks. dir is
// removed afterwards.
func (s *Service) Load(ctx context.Context, dir, name string, m bundle.Manifest) (model.Operation, error) {
	if err := model.ValidateImageRef(name); err != nil {
		_ = os.RemoveAll(dir)
		return model.Operation{}, err
	}
	src := &registerSource{dir: dir, describe: "bundle of " + m.Name}
	if m.Source != "" {
		src.describe += " (" + m.Source + ")"
	}
	for _, f := range m.Files {
		if f.Name == bundle.Rootfs {
			src.digest = "sha256:" + f.SHA256
		}
	}
	if len(m.Config) > 0 {
		var c model.ImageConfig
		if err := json.Unmarshal(m.Config, &c); err != nil {
			_ = os.RemoveAll(dir)
			return model.Operation{}, model.Errorf(model.ErrInvalid, "the bundle's image config is not valid: %v", err)
		}
		src.config = &c
	}
	return s.ops.Begin("image.load", name, func(ctx context.Context, p *op.Progress) error {
		defer os.RemoveAll(dir)
		_, err := s.installNew(ctx, name, src, p)
		return err
	}), nil
}
