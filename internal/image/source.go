package image

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/banger-dev/banger/internal/model"
)

// Source is where an image comes from: the Debian recipe, an OCI
// registry, a local archive. The service asks a source to fetch what
// identifies the image, then to build its files, and publishes them
// itself: a source never touches the store, and nothing it does holds a
// lock.
type Source interface {
	// Describe says where the image comes from, as `image show` puts it.
	Describe() string
	// Fetch gets what the image is made of into the source's caches and
	// returns its digest ("" when only building tells), so that an image
	// already current is not built again.
	Fetch(ctx context.Context, p Progress) (digest string, err error)
	// Build makes the image's files (in work, a directory of its own
	// the service removes afterwards, or in a cache) and returns them with
	// the image's runtime config (nil when it has none).
	Build(ctx context.Context, work string, p Progress) (Artifacts, *model.ImageConfig, error)
}

// Progress is what a source reports: phases, and counts within one.
// op.Progress is one.
type Progress interface {
	Phase(name string, total int64)
	Add(n int64)
	// Item says where one part of the phase is (a layer).
	Item(name string, done, total int64)
}

// phases adapts a func(phase) to Progress.
type phases func(string)

func (f phases) Phase(name string, _ int64) { f(name) }
func (phases) Add(int64)                    {}
func (phases) Item(string, int64, int64)    {}

// install makes src's image local as name, outside any lock but the
// publication's. An image of that name with the same digest is current
// and stays; with another digest the name is repointed when replace says
// so (a moved tag), never changing what existing VMs boot from.
func (s *Service) install(ctx context.Context, name string, src Source, p Progress, replace bool) (model.Image, error) {
	start := time.Now()
	if r, ok := src.(interface{ release() }); ok {
		defer r.release()
	}
	digest, err := src.Fetch(ctx, p)
	if err != nil {
		return model.Image{}, err
	}
	if existing, err := s.store.GetImage(ctx, name); err == nil {
		if digest != "" && existing.Digest == digest {
			s.log.Info("image is current", "image", name, "digest", digest, "took", time.Since(start).Round(time.Millisecond))
			return existing, nil
		}
		if !replace {
			return existing, nil
		}
		// A moved tag: the name is repointed when the new content is
		// published; VMs built on the old content keep it.
	}
	if err := os.MkdirAll(s.cfg.Layout.ImagesDir(), 0o750); err != nil {
		return model.Image{}, fmt.Errorf("creating images directory: %w", err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	work := filepath.Join(s.cfg.Layout.ImagesDir(), ".work-"+hex.EncodeToString(rnd[:]))
	if err := os.Mkdir(work, 0o700); err != nil {
		return model.Image{}, fmt.Errorf("creating a work directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(work) }()
	art, cfg, err := src.Build(ctx, work, p)
	if err != nil {
		return model.Image{}, fmt.Errorf("building image %s: %w", name, err)
	}
	p.Phase("installing image", 0)
	im, err := s.publish(ctx, name, src.Describe(), art, cfg, replace)
	if err != nil {
		return model.Image{}, err
	}
	s.log.Info("image ready", "image", name, "digest", im.Digest, "took", time.Since(start).Round(time.Millisecond))
	return im, nil
}

// installNew is install for a name that must be new (a registration, a
// bundle load, a promote): an image of that name already there, or
// published meanwhile, is model.ErrConflict.
func (s *Service) installNew(ctx context.Context, name string, src Source, p Progress) (model.Image, error) {
	if err := s.NewName(ctx, name); err != nil {
		return model.Image{}, err
	}
	return s.install(ctx, name, src, p, false)
}

// NewName checks that name is a valid image name no image has yet: what
// a registration, an upload or a promote must be given, checked before
// anything is received or booted.
func (s *Service) NewName(ctx context.Context, name string) error {
	if err := model.ValidateImageRef(name); err != nil {
		return err
	}
	if _, err := s.store.GetImage(ctx, name); err == nil {
		return model.Errorf(model.ErrConflict, "image %q already exists; delete it first or choose another name", name)
	}
	return nil
}

// debianSource builds a catalog image from Debian packages, cached by
// recipe.
type debianSource struct {
	entry    Entry
	cacheDir string
	opts     DebianOptions
}

func (d debianSource) Describe() string { return d.entry.Source }

func (debianSource) Fetch(context.Context, Progress) (string, error) { return "", nil }

func (d debianSource) Build(ctx context.Context, _ string, p Progress) (Artifacts, *model.ImageConfig, error) {
	art, err := CachedDebian(ctx, d.cacheDir, d.opts, func(phase string) { p.Phase(phase, 0) })
	return art, nil, err
}
