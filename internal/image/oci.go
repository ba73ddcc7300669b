package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
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

// kernelImage is the image whose kernel OCI images boot on.
const kernelImage = "debian-12"

// ociSource pulls an image from a registry into the blob cache.
type ociSource struct {
	s      *Service
	req    PullRequest
	pulled oci.Image
	pinned func()
}

func (o *ociSource) release() {
	if o.pinned != nil {
		o.pinned()
	}
}

func (o *ociSource) Describe() string {
	if o.pulled.Digest != "" {
		return "oci " + o.pulled.Ref + "@" + o.pulled.Digest
	}
	return "oci " + o.req.Ref
}

// Fetch gets the manifest and config, and every layer not cached yet.
func (o *ociSource) Fetch(ctx context.Context, p Progress) (string, error) {
	p.Phase("fetching manifest", 0)
	phase := false
	var reported int64
	pulled, err := o.s.blobs().Pull(ctx, o.req.Ref, oci.PullOptions{Auth: o.req.Auth, Insecure: o.req.Insecure, Platform: o.req.Platform,
		OnLayers: func(d []string) { o.pinned = o.s.pin(d) },
		Progress: func(pr oci.Progress) {
			if !phase {
				p.Phase(fmt.Sprintf("downloading %d layers", pr.Layers), pr.Total)
				phase = true
			}
			p.Add(pr.Done - reported)
			reported = pr.Done
			p.Item(pr.Digest, pr.LayerDone, pr.LayerSize)
		}})
	if err != nil {
		return "", err
	}
	o.pulled = pulled
	o.s.log.Info("image fetched", "ref", pulled.Ref, "digest", pulled.Digest, "layers", len(pulled.Layers), "downloaded", pulled.Downloaded)
	return pulled.Digest, nil
}

func (o *ociSource) Build(ctx context.Context, work string, p Progress) (Artifacts, *model.ImageConfig, error) {
	return o.s.buildOCI(ctx, work, p, o.pulled)
}

// archiveSource is an image in a `docker save` tarball or an OCI layout
// tar the daemon received (a file of its own, removed afterwards).
type archiveSource struct {
	s          *Service
	path, name string
	stored     oci.Image
	pinned     func()
}

func (a *archiveSource) release() {
	if a.pinned != nil {
		a.pinned()
	}
}

func (a *archiveSource) Describe() string {
	return "archive " + a.name + "@" + a.stored.Digest
}

func (a *archiveSource) Fetch(ctx context.Context, p Progress) (string, error) {
	p.Phase("reading the archive", 0)
	if err := os.MkdirAll(a.s.cfg.Layout.ImagesDir(), 0o750); err != nil {
		return "", err
	}
	scratch, err := os.MkdirTemp(a.s.cfg.Layout.ImagesDir(), ".import-")
	if err != nil {
		return "", fmt.Errorf("creating a work directory: %w", err)
	}
	defer os.RemoveAll(scratch)
	img, err := oci.ReadArchive(ctx, a.path, scratch)
	if err != nil {
		return "", model.Errorf(model.ErrInvalid, "image import: %v", err)
	}
	if a.stored, err = a.s.blobs().Store(ctx, "archive "+a.name, img, nil, func(d []string) { a.pinned = a.s.pin(d) }); err != nil {
		return "", err
	}
	return a.stored.Digest, nil
}

func (a *archiveSource) Build(ctx context.Context, work string, p Progress) (Artifacts, *model.ImageConfig, error) {
	return a.s.buildOCI(ctx, work, p, a.stored)
}

func (s *Service) blobs() oci.Cache { return oci.Cache{Dir: s.cfg.Layout.BlobsDir()} }

// buildOCI flattens a cached image's layers into a tree in work and writes
// its ext4; the kernel is debian-12's.
func (s *Service) buildOCI(ctx context.Context, work string, p Progress, im oci.Image) (Artifacts, *model.ImageConfig, error) {
	p.Phase("fetching the kernel image "+kernelImage, 0)
	kernel, err := s.Ensure(ctx, kernelImage, func(string) {})
	if err != nil {
		return Artifacts{}, nil, fmt.Errorf("the kernel for OCI images: %w", err)
	}
	treeDir := filepath.Join(work, "tree")
	if err := os.Mkdir(treeDir, 0o755); err != nil {
		return Artifacts{}, nil, err
	}
	p.Phase(fmt.Sprintf("applying %d layers", len(im.Layers)), 0)
	applyStart := time.Now()
	tree, err := rootfs.Open(treeDir)
	if err != nil {
		return Artifacts{}, nil, err
	}
	err = s.blobs().Flatten(ctx, im, tree)
	tree.Close()
	if err != nil {
		return Artifacts{}, nil, fmt.Errorf("flattening %s: %w", im.Ref, err)
	}
	p.Phase("writing the root filesystem", 0)
	ext4Start := time.Now()
	img := filepath.Join(work, "rootfs.ext4")
	if err := rootfs.WriteExt4(ctx, treeDir, img, rootfs.Ext4Options{Label: RootfsLabel}); err != nil {
		return Artifacts{}, nil, err
	}
	s.log.Info("image written", "ref", im.Ref, "apply", ext4Start.Sub(applyStart).Round(time.Millisecond),
		"ext4", time.Since(ext4Start).Round(time.Millisecond))
	fi, err := os.Stat(img)
	if err != nil {
		return Artifacts{}, nil, err
	}
	c := im.Config.Config
	art := Artifacts{Kernel: kernel.KernelPath, ModulesDir: kernel.ModulesPath, Rootfs: img, Digest: im.Digest, SizeBytes: fi.Size(), Layers: im.Digests()}
	return art, &model.ImageConfig{Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd, WorkingDir: c.WorkingDir, User: c.User}, nil
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
		_, err := s.install(ctx, name, &archiveSource{s: s, path: path, name: name}, p, true)
		return err
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

// pin keeps the blobs digests from a prune until the returned func runs:
// a pull or import between fetching them and publishing its image.
func (s *Service) pin(digests []string) func() {
	s.pinMu.Lock()
	defer s.pinMu.Unlock()
	if s.pins == nil {
		s.pins = map[string]int{}
	}
	for _, d := range digests {
		s.pins[d]++
	}
	return func() {
		s.pinMu.Lock()
		defer s.pinMu.Unlock()
		for _, d := range digests {
			if s.pins[d]--; s.pins[d] <= 0 {
				delete(s.pins, d)
			}
		}
	}
}

// PruneResult is what a prune removed.
type PruneResult struct {
	// Images are the names deleted (with all) and the IDs of contents
	// nothing referred to any more.
	Images []string
	Blobs  int
	Bytes  int64
}

// Prune removes image contents no name and no VM refers to, files in the
// images directory no record refers to (leftovers of a crash), and cached
// layer blobs no image was built from (nor a pull or import in flight
// holds). With all, it first deletes every name no VM's image is.
func (s *Service) Prune(ctx context.Context, all bool) (PruneResult, error) {
	var res PruneResult
	ims, err := s.store.ListImages(ctx)
	if err != nil {
		return res, err
	}
	if all {
		for _, im := range ims {
			if im.Name == "" {
				continue
			}
			err := s.Delete(ctx, im.Name)
			if errors.Is(err, model.ErrState) {
				continue // a VM uses it
			}
			if err != nil {
				return res, err
			}
			res.Images = append(res.Images, im.Name)
		}
	}
	if err := s.pruneContents(ctx, &res); err != nil {
		return res, err
	}
	if ims, err = s.store.ListImages(ctx); err != nil {
		return res, err
	}
	s.pinMu.Lock()
	defer s.pinMu.Unlock()
	keep := map[string]bool{}
	for _, im := range ims {
		for _, d := range im.Layers {
			keep[d] = true
		}
	}
	blobs, err := s.blobs().Blobs()
	if err != nil {
		return res, err
	}
	for d, size := range blobs {
		if keep[d] || s.pins[d] > 0 {
			continue
		}
		if err := s.blobs().Remove(d); err != nil {
			return res, fmt.Errorf("removing layer %s: %w", d, err)
		}
		res.Blobs++
		res.Bytes += size
	}
	s.log.Info("images pruned", "images", res.Images, "blobs", res.Blobs, "bytes", res.Bytes)
	return res, nil
}

// pruneContents drops unnamed contents no VM uses, then directories under
// the images directory no content's files are in. Staging and work
// directories (dot names) belong to builds in flight and are left alone.
func (s *Service) pruneContents(ctx context.Context, res *PruneResult) error {
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	ims, err := s.store.ListImages(ctx)
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, im := range ims {
		if im.Name == "" {
			dropped, err := s.dropContent(ctx, im.ID)
			if err != nil {
				return err
			}
			if dropped {
				res.Images = append(res.Images, im.ID)
				continue
			}
		}
		used[filepath.Dir(im.RootfsPath)] = true
	}
	entries, err := os.ReadDir(s.cfg.Layout.ImagesDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading images directory: %w", err)
	}
	for _, e := range entries {
		dir := filepath.Join(s.cfg.Layout.ImagesDir(), e.Name())
		if strings.HasPrefix(e.Name(), ".") || used[dir] {
			continue
		}
		s.log.Info("removing image files no image refers to", "dir", dir)
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("removing image files: %w", err)
		}
	}
	return nil
}
