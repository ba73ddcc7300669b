package image

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/oci"
	"github.com/banger-dev/banger/internal/op"
	"github.com/banger-dev/banger/internal/rootfs"
)

// PullRequest asks for an image by catalog name or OCI reference.
type PullRequest struct {
	Ref string
	// Name is the local name (default: Ref as given).
	Name string
	// Auth is the caller's credential for Ref's registry, for this pull
	// only.
	Auth     *oci.Auth
	Insecure bool
	Platform string
}

// IsOCIRef reports whether ref reads as a registry reference rather than
// a catalog name: it names a repository path, a tag or a digest.
func IsOCIRef(ref string) bool { return strings.ContainsAny(ref, "/:@") }

// kernelImage is the image whose kernel OCI images boot on.
const kernelImage = "debian-12"

// pullOCI fetches req.Ref's missing layers into the blob cache, flattens
// them into a tree and writes its ext4, all outside any lock, then
// publishes the image. An image of that name with the same digest is
// already current: only the manifest was fetched.
func (s *Service) pullOCI(ctx context.Context, p *op.Progress, req PullRequest) error {
	name := req.Name
	if name == "" {
		name = req.Ref
	}
	start := time.Now()
	cache := oci.Cache{Dir: s.cfg.Layout.BlobsDir()}
	p.Phase("fetching manifest", 0)
	phase := false
	var reported int64
	pulled, err := cache.Pull(ctx, req.Ref, oci.PullOptions{Auth: req.Auth, Insecure: req.Insecure, Platform: req.Platform,
		Progress: func(pr oci.Progress) {
			if !phase {
				p.Phase(fmt.Sprintf("downloading %d layers", pr.Layers), pr.Total)
				phase = true
			}
			p.Add(pr.Done - reported)
			reported = pr.Done
		}})
	if err != nil {
		return err
	}
	if err := s.installOCI(ctx, p, name, cache, pulled); err != nil {
		return err
	}
	s.log.Info("image pulled", "image", name, "digest", pulled.Digest, "layers", len(pulled.Layers),
		"downloaded", pulled.Downloaded, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// installOCI makes the cached image pulled local as name: flattened into a
// tree, written as ext4, with debian-12's kernel, in one publication. An
// image of that name with the same digest is already current.
func (s *Service) installOCI(ctx context.Context, p *op.Progress, name string, cache oci.Cache, pulled oci.Image) error {
	if existing, err := s.store.GetImage(ctx, name); err == nil {
		if existing.Digest == pulled.Digest {
			s.log.Info("image is current", "image", name, "digest", pulled.Digest)
			return nil
		}
		// A moved tag: the old image goes, unless a VM is built on it.
		if err := s.Delete(ctx, name); err != nil {
			if errors.Is(err, model.ErrConflict) {
				return model.Errorf(model.ErrConflict, "%s now points at %s, but image %s (%s) is used by a vm; delete that vm first or pull with --name NEW", pulled.Ref, pulled.Digest, name, existing.Digest)
			}
			return err
		}
	}
	p.Phase("fetching the kernel image "+kernelImage, 0)
	kernel, err := s.Ensure(ctx, kernelImage, func(string) {})
	if err != nil {
		return fmt.Errorf("the kernel for OCI images: %w", err)
	}

	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	work := filepath.Join(s.cfg.Layout.ImagesDir(), ".work-"+hex.EncodeToString(rnd[:]))
	treeDir := filepath.Join(work, "tree")
	if err := os.MkdirAll(treeDir, 0o700); err != nil {
		return fmt.Errorf("creating a work directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(work) }()
	p.Phase(fmt.Sprintf("applying %d layers", len(pulled.Layers)), 0)
	tree, err := rootfs.Open(treeDir)
	if err != nil {
		return err
	}
	applyStart := time.Now()
	err = cache.Flatten(ctx, pulled, tree)
	tree.Close()
	if err != nil {
		return fmt.Errorf("flattening %s: %w", pulled.Ref, err)
	}
	p.Phase("writing the root filesystem", 0)
	ext4Start := time.Now()
	img := filepath.Join(work, "rootfs.ext4")
	if err := rootfs.WriteExt4(ctx, treeDir, img, rootfs.Ext4Options{Label: RootfsLabel}); err != nil {
		return err
	}
	s.log.Info("image written", "image", name, "apply", ext4Start.Sub(applyStart).Round(time.Millisecond),
		"ext4", time.Since(ext4Start).Round(time.Millisecond))
	fi, err := os.Stat(img)
	if err != nil {
		return err
	}
	c := pulled.Config.Config
	art := Artifacts{Kernel: kernel.KernelPath, ModulesDir: kernel.ModulesPath, Rootfs: img,
		Digest: pulled.Digest, SizeBytes: fi.Size()}
	cfg := &model.ImageConfig{Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd, WorkingDir: c.WorkingDir, User: c.User}
	p.Phase("installing image", 0)
	if _, err := s.publish(ctx, name, "oci "+pulled.Ref+"@"+pulled.Digest, art, cfg); err != nil {
		return err
	}
	return nil
}

// Import starts an operation that makes the image in the archive at path
// (a `docker save` tarball or an OCI layout tar, which the daemon received
// as a stream) local as name, and removes the archive.
func (s *Service) Import(ctx context.Context, path, name string) (model.Operation, error) {
	if err := model.ValidateImageRef(name); err != nil {
		_ = os.Remove(path)
		return model.Operation{}, err
	}
	return s.ops.Begin("image.import", name, func(ctx context.Context, p *op.Progress) error {
		defer os.Remove(path)
		if err := os.MkdirAll(s.cfg.Layout.ImagesDir(), 0o750); err != nil {
			return fmt.Errorf("creating images directory: %w", err)
		}
		scratch, err := os.MkdirTemp(s.cfg.Layout.ImagesDir(), ".import-")
		if err != nil {
			return fmt.Errorf("creating a work directory: %w", err)
		}
		defer os.RemoveAll(scratch)
		p.Phase("reading the archive", 0)
		img, err := oci.ReadArchive(ctx, path, scratch)
		if err != nil {
			return model.Errorf(model.ErrInvalid, "image import: %v", err)
		}
		cache := oci.Cache{Dir: s.cfg.Layout.BlobsDir()}
		stored, err := cache.Store(ctx, "archive "+name, img, func(pr oci.Progress) {})
		if err != nil {
			return err
		}
		return s.installOCI(ctx, p, name, cache, stored)
	}), nil
}

// Sweep removes what pulls, imports and publications left when the daemon
// died under them: the dot-named work directories and uploads in the
// images directory, and partial layer blobs. Only the daemon writes
// there, and it sweeps before it serves.
func (s *Service) Sweep() {
	for _, pattern := range []string{
		filepath.Join(s.cfg.Layout.ImagesDir(), ".*"),
		filepath.Join(s.cfg.Layout.BlobsDir(), "sha256", ".partial-*"),
	} {
		leftovers, _ := filepath.Glob(pattern)
		for _, l := range leftovers {
			if err := os.RemoveAll(l); err != nil {
				s.log.Warn("removing leftover image work", "path", l, "err", err)
				continue
			}
			s.log.Info("removed leftover image work", "path", l)
		}
	}
}

// Upload makes the file an import streams into: in the images directory,
// dot-named, so a daemon that dies meanwhile sweeps it at the next start.
func (s *Service) Upload() (*os.File, error) {
	if err := os.MkdirAll(s.cfg.Layout.ImagesDir(), 0o750); err != nil {
		return nil, fmt.Errorf("creating images directory: %w", err)
	}
	return os.CreateTemp(s.cfg.Layout.ImagesDir(), ".upload-*.tar")
}
