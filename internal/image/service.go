package image

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/banger-dev/banger/internal/host/disk"
	"github.com/banger-dev/banger/internal/initramfs"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/op"
	"github.com/banger-dev/banger/internal/paths"

	"github.com/banger-dev/banger/internal/atomicfile"
)

// Store is what the image service needs from the database: names
// referring to contents (see model.Image).
type Store interface {
	// InsertImage records im's content and name; replace repoints an
	// existing name instead of failing with model.ErrConflict.
	InsertImage(ctx context.Context, im model.Image, replace bool) error
	GetImage(ctx context.Context, name string) (model.Image, error)
	GetImageContent(ctx context.Context, id string) (model.Image, error)
	// ListImages lists named images, then contents with no name.
	ListImages(ctx context.Context) ([]model.Image, error)
	// DeleteImage removes a name no VM's content is and returns the
	// content it named (model.ErrState while a VM uses it).
	DeleteImage(ctx context.Context, name string) (string, error)
	// DeleteImageContent removes a content nothing refers to
	// (model.ErrState otherwise) and returns it.
	DeleteImageContent(ctx context.Context, id string) (model.Image, error)
}

// ServiceConfig configures the image service.
type ServiceConfig struct {
	Layout paths.Layout
	// CacheDir keeps built images by recipe, so a rebuild of the same
	// recipe is a copy.
	CacheDir string
	// Mirror and ExtraPackages shape the debian-12 build.
	Mirror        string
	ExtraPackages []string
	// AgentPath is the banger-agent binary put into every initramfs.
	AgentPath string
}

// Service owns images. publishMu is held only for the publication window
// (recheck the name, rename the staged directory into place, insert the
// record); builds and copies run outside it.
type Service struct {
	cfg     ServiceConfig
	store   Store
	catalog *Catalog
	ops     *op.Registry
	log     *slog.Logger

	publishMu sync.Mutex
	// pinMu guards pins: layer blobs a pull or import in flight holds
	// against a prune (a counter per digest).
	pinMu     sync.Mutex
	pins      map[string]int
	agentOnce sync.Once
	agentSum  string
	agentErr  error
}

// NewService makes an image service.
func NewService(cfg ServiceConfig, store Store, catalog *Catalog, ops *op.Registry, log *slog.Logger) *Service {
	return &Service{cfg: cfg, store: store, catalog: catalog, ops: ops, log: log}
}

// Catalog is the service's catalog.
func (s *Service) Catalog() *Catalog { return s.catalog }

// Get returns a local image.
func (s *Service) Get(ctx context.Context, name string) (model.Image, error) {
	return s.store.GetImage(ctx, name)
}

// Find returns a local image by name, or by its ID or an ID prefix of at
// least 12 hex digits (as `image list` shows it), named or not.
func (s *Service) Find(ctx context.Context, ref string) (model.Image, error) {
	im, err := s.store.GetImage(ctx, ref)
	prefix := strings.TrimPrefix(ref, "sha256:")
	if !errors.Is(err, model.ErrNotFound) || len(prefix) < 12 {
		return im, err
	}
	ims, lerr := s.store.ListImages(ctx)
	if lerr != nil {
		return model.Image{}, lerr
	}
	var found []model.Image
	for _, c := range ims {
		if strings.HasPrefix(strings.TrimPrefix(c.ID, "sha256:"), prefix) && (len(found) == 0 || found[0].ID != c.ID) {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		return model.Image{}, err
	}
	return found[0], nil
}

// Content returns a local image by content ID, whether or not a name
// still refers to it: what a VM boots from.
func (s *Service) Content(ctx context.Context, id string) (model.Image, error) {
	im, err := s.store.GetImageContent(ctx, id)
	if errors.Is(err, model.ErrNotFound) {
		return model.Image{}, model.Errorf(model.ErrNotFound, "the image this vm was created from (%s) is gone; delete the vm and create it again", id)
	}
	return im, err
}

// List returns local images: every name, then the contents VMs still use
// that no name refers to any more (Name "").
func (s *Service) List(ctx context.Context) ([]model.Image, error) { return s.store.ListImages(ctx) }

// Delete removes a name no VM's image is, and its content's files when
// nothing else refers to them.
func (s *Service) Delete(ctx context.Context, name string) error {
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	id, err := s.store.DeleteImage(ctx, name)
	if err != nil {
		return err
	}
	if _, err := s.dropContent(ctx, id); err != nil {
		return err
	}
	s.log.Info("image deleted", "image", name, "id", id)
	return nil
}

// dropContent removes a content and its files if nothing refers to it
// any more, and says whether it did. The caller holds publishMu, so no
// publication is about to reuse the files.
func (s *Service) dropContent(ctx context.Context, id string) (bool, error) {
	im, err := s.store.DeleteImageContent(ctx, id)
	if errors.Is(err, model.ErrState) || errors.Is(err, model.ErrNotFound) {
		return false, nil // still named or used by a VM, or gone already
	}
	if err != nil {
		return false, err
	}
	// Files live in one directory under the images directory; a record
	// pointing anywhere else is not trusted with a removal.
	dir := filepath.Dir(im.RootfsPath)
	if filepath.Dir(dir) != s.cfg.Layout.ImagesDir() {
		s.log.Warn("image files outside the images directory left alone", "id", id, "dir", dir)
		return true, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return true, fmt.Errorf("removing image files: %w", err)
	}
	return true, nil
}

// Pull starts an operation that makes an image local: a catalog entry is
// fetched or built, an OCI reference pulled (again: a moved tag is
// followed).
func (s *Service) Pull(ctx context.Context, req PullRequest) (model.Operation, error) {
	name := req.Ref
	if err := model.ValidateImageRef(name); err != nil {
		return model.Operation{}, err
	}
	if req.Name != "" {
		if err := model.ValidateImageRef(req.Name); err != nil {
			return model.Operation{}, err
		}
		name = req.Name
	}
	if e, ok := s.catalog.Lookup(req.Ref); ok && e.OCI != "" {
		// A catalog name for an OCI image: pulled again, as a reference is.
		return s.ops.Begin("image.pull", e.Name, func(ctx context.Context, p *op.Progress) error {
			_, err := s.install(ctx, e.Name, s.entrySource(e, req), p, true)
			return err
		}), nil
	}
	if _, ok := s.catalog.Lookup(req.Ref); !ok && model.IsImageReference(req.Ref) {
		return s.ops.Begin("image.pull", name, func(ctx context.Context, p *op.Progress) error {
			_, err := s.install(ctx, name, &ociSource{s: s, req: req}, p, true)
			return err
		}), nil
	}
	if _, ok := s.catalog.Lookup(req.Ref); !ok {
		if _, err := s.store.GetImage(ctx, req.Ref); err != nil {
			return model.Operation{}, s.unknown(req.Ref)
		}
	}
	return s.ops.Begin("image.pull", req.Ref, func(ctx context.Context, p *op.Progress) error {
		_, err := s.Ensure(ctx, req.Ref, func(phase string) { p.Phase(phase, 0) })
		return err
	}), nil
}

func (s *Service) unknown(name string) error {
	return model.Errorf(model.ErrNotFound, "image %q is neither registered nor in the catalog (catalog: %v); a registry image is named by its reference, such as docker.io/library/alpine:3.20", name, s.catalog.Names())
}

// Ensure returns the named image, building it from its catalog recipe
// first when it is not local.
func (s *Service) Ensure(ctx context.Context, name string, progress func(string)) (model.Image, error) {
	im, err := s.store.GetImage(ctx, name)
	if err == nil {
		return im, nil
	}
	if !errors.Is(err, model.ErrNotFound) {
		return model.Image{}, err
	}
	entry, ok := s.catalog.Lookup(name)
	if !ok {
		return model.Image{}, s.unknown(name)
	}
	if entry.Bundle != "" {
		// Downloaded by the CLI, as the user, then loaded.
		return model.Image{}, model.Errorf(model.ErrNotFound, "image %q is a bundle in the catalog (%s) and not loaded yet; run `banger image pull %s`", name, entry.Bundle, name)
	}
	if progress == nil {
		progress = func(string) {}
	}
	return s.install(ctx, name, s.entrySource(entry, PullRequest{}), phases(progress), false)
}

// entrySource is where a catalog entry's image comes from; req carries
// the caller's credential for an OCI entry.
func (s *Service) entrySource(e Entry, req PullRequest) Source {
	if e.OCI != "" {
		req.Ref, req.Name = e.OCI, e.Name
		return &ociSource{s: s, req: req}
	}
	return debianSource{entry: e, cacheDir: s.cfg.CacheDir,
		opts: DebianOptions{Mirror: s.cfg.Mirror, Suite: e.Suite, Packages: append(append([]string{}, s.cfg.ExtraPackages...), e.Packages...)}}
}

// publish links the cached artifacts into a staging directory, then
// within publishMu moves it into place under the content's ID (unless
// that content is stored already) and records the name. A concurrent
// publisher of the same name loses cleanly: with the same content it gets
// the winner's image, with other content model.ErrConflict. With replace,
// an existing name is repointed at the new content, and the old content
// goes unless a VM still uses it.
func (s *Service) publish(ctx context.Context, name, source string, art Artifacts, cfg *model.ImageConfig, replace bool) (model.Image, error) {
	id, err := contentID(art, cfg)
	if err != nil {
		return model.Image{}, err
	}
	if err := os.MkdirAll(s.cfg.Layout.ImagesDir(), 0o750); err != nil {
		return model.Image{}, fmt.Errorf("creating images directory: %w", err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	staging := filepath.Join(s.cfg.Layout.ImagesDir(), ".staging-"+hex.EncodeToString(rnd[:]))
	defer os.RemoveAll(staging)
	final := s.cfg.Layout.ContentDir(id)
	im := model.Image{
		Name: name, ID: id, KernelPath: filepath.Join(final, "vmlinuz"), RootfsPath: filepath.Join(final, "rootfs.ext4"),
		ModulesPath: filepath.Join(final, "modules", filepath.Base(art.ModulesDir)),
		Source:      source, Digest: art.Digest, SizeBytes: art.SizeBytes, Config: cfg, Layers: art.Layers, CreatedAt: time.Now().UTC(),
	}
	if art.Initrd != "" {
		im.InitrdPath = filepath.Join(final, "initrd")
	}
	if _, err := s.store.GetImageContent(ctx, id); err != nil {
		// New content: staged outside the lock (linking a large tree
		// takes a while), moved into place inside it.
		if err := linkTree(art.ModulesDir, filepath.Join(staging, "modules", filepath.Base(art.ModulesDir))); err != nil {
			return model.Image{}, err
		}
		files := map[string]string{art.Kernel: "vmlinuz", art.Rootfs: "rootfs.ext4"}
		if art.Initrd != "" {
			files[art.Initrd] = "initrd"
		}
		for src, dst := range files {
			if err := linkOrCopy(src, filepath.Join(staging, dst)); err != nil {
				return model.Image{}, err
			}
		}
	}

	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	existing, err := s.store.GetImage(ctx, name)
	switch {
	case err == nil && existing.ID == id:
		return existing, nil
	case err == nil && !replace:
		// Another pull or registration of this name won the window. Its
		// content is not what this one made, which is not kept: the
		// caller is told so rather than handed the winner.
		return model.Image{}, model.Errorf(model.ErrConflict, "image %q was made meanwhile by another pull or registration (%s, %s); this one (%s) was not kept: give another name, or delete that image first", name, existing.Source, existing.Digest, art.Digest)
	case err != nil && !errors.Is(err, model.ErrNotFound):
		return model.Image{}, err
	}
	if stored, err := s.store.GetImageContent(ctx, id); err == nil {
		im = stored // shared with another name: its files and record
		im.Name, im.CreatedAt = name, time.Now().UTC()
	} else {
		_ = os.RemoveAll(final) // leftovers of a crash between rename and insert
		if err := os.Rename(staging, final); err != nil {
			return model.Image{}, fmt.Errorf("installing image: %w", err)
		}
	}
	if err := s.store.InsertImage(ctx, im, replace); err != nil {
		if _, gerr := s.store.GetImageContent(ctx, id); gerr != nil {
			_ = os.RemoveAll(final)
		}
		return model.Image{}, err
	}
	if existing.ID != "" {
		if _, err := s.dropContent(ctx, existing.ID); err != nil {
			s.log.Warn("removing the replaced image's files", "image", name, "id", existing.ID, "err", err)
		}
	}
	return im, nil
}

// contentID is the digest over everything a VM boots from: the kernel's
// and initrd's bytes, the root filesystem's digest, the modules' kernel
// version and the runtime config. Equal IDs mean interchangeable images.
func contentID(art Artifacts, cfg *model.ImageConfig) (string, error) {
	kernel, _, err := disk.Sum(art.Kernel)
	if err != nil {
		return "", fmt.Errorf("hashing the kernel: %w", err)
	}
	var initrd string
	if art.Initrd != "" {
		sum, _, err := disk.Sum(art.Initrd)
		if err != nil {
			return "", fmt.Errorf("hashing the initrd: %w", err)
		}
		initrd = "sha256:" + sum
	}
	rootfs := art.Digest
	if rootfs == "" {
		sum, _, err := disk.Sum(art.Rootfs)
		if err != nil {
			return "", fmt.Errorf("hashing the root filesystem: %w", err)
		}
		rootfs = "sha256:" + sum
	}
	b, err := json.Marshal(struct {
		Kernel  string             `json:"kernel"`
		Initrd  string             `json:"initrd,omitempty"`
		Rootfs  string             `json:"rootfs"`
		Modules string             `json:"modules"`
		Config  *model.ImageConfig `json:"config,omitempty"`
	}{"sha256:" + kernel, initrd, rootfs, filepath.Base(art.ModulesDir), cfg})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// Initramfs returns banger's initramfs for im's kernel: the agent plus the
// modules it needs, cached by kernel modules, the list of modules and the
// agent binary. An image with an initrd of its own gets that first and
// banger's after it, in one file: the kernel unpacks both, and banger's
// /init, unpacked last, is the one that runs.
func (s *Service) Initramfs(ctx context.Context, im model.Image) (string, error) {
	s.agentOnce.Do(func() { s.agentSum, _, s.agentErr = disk.Sum(s.cfg.AgentPath) })
	if s.agentErr != nil {
		return "", fmt.Errorf("reading the guest agent %s: %w; reinstall banger (scripts/install) so banger-agent sits beside bangerd", s.cfg.AgentPath, s.agentErr)
	}
	key := sha256.Sum256([]byte(im.ModulesPath + "\x00" + im.Digest + "\x00" + s.agentSum + "\x00" + strings.Join(initramfs.Needed, ",") + "\x00" + im.InitrdPath))
	dir := s.cfg.Layout.InitramfsDir()
	path := filepath.Join(dir, hex.EncodeToString(key[:8])+".cpio")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("creating initramfs directory: %w", err)
	}
	// Built into a temporary file and renamed: concurrent builders write
	// the same bytes and the last rename wins, so no lock is needed.
	err := atomicfile.WriteWith(path, 0o640, func(f *os.File) error {
		if im.InitrdPath != "" {
			if err := prependInitrd(f, im.InitrdPath); err != nil {
				return err
			}
		}
		return initramfs.Build(ctx, f, s.cfg.AgentPath, im.ModulesPath)
	})
	if err != nil {
		return "", fmt.Errorf("building initramfs for %s: %w", im.Name, err)
	}
	return path, nil
}

// prependInitrd copies an image's own initrd to f, padded to the 4-byte
// boundary the kernel expects between concatenated archives.
func prependInitrd(f *os.File, path string) error {
	in, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("reading the image's initrd: %w", err)
	}
	defer in.Close()
	n, err := io.Copy(f, in)
	if err != nil {
		return fmt.Errorf("copying the image's initrd: %w", err)
	}
	if pad := (4 - n%4) % 4; pad > 0 {
		if _, err := f.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	return nil
}

// linkOrCopy hard-links src to dst, copying when they are on different
// filesystems.
func linkOrCopy(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(dst), err)
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fi.Mode().Perm())
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return nil
}

// linkTree recreates the tree at src under dst with hard links (or copies),
// following no symlinks out of it.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			return linkOrCopy(p, target)
		}
		return nil
	})
}
