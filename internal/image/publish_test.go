package image

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/paths"
)

// memStore is a state-holding fake of the image table.
type memStore struct {
	mu  sync.Mutex
	ims map[string]model.Image
}

func (m *memStore) InsertImage(_ context.Context, im model.Image) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.ims[im.Name]; ok {
		return model.Errorf(model.ErrConflict, "image %q exists", im.Name)
	}
	m.ims[im.Name] = im
	return nil
}

func (m *memStore) GetImage(_ context.Context, name string) (model.Image, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	im, ok := m.ims[name]
	if !ok {
		return model.Image{}, model.Errorf(model.ErrNotFound, "no image %q", name)
	}
	return im, nil
}

func (m *memStore) ListImages(context.Context) ([]model.Image, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []model.Image
	for _, im := range m.ims {
		out = append(out, im)
	}
	return out, nil
}

func (m *memStore) DeleteImage(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.ims, name)
	return nil
}

// slowSource builds a tiny image after started is told and release
// closes: the slow download or conversion of a real source.
type slowSource struct {
	digest  string
	started chan<- string
	release <-chan struct{}
}

func (s *slowSource) Describe() string { return "slow fake " + s.digest }

func (s *slowSource) Fetch(context.Context, Progress) (string, error) { return s.digest, nil }

func (s *slowSource) Build(ctx context.Context, work string, _ Progress) (Artifacts, *model.ImageConfig, error) {
	s.started <- s.digest
	select {
	case <-s.release:
	case <-ctx.Done():
		return Artifacts{}, nil, ctx.Err()
	}
	mods := filepath.Join(work, "modules", "6.1")
	if err := os.MkdirAll(mods, 0o755); err != nil {
		return Artifacts{}, nil, err
	}
	for p, body := range map[string]string{filepath.Join(mods, "modules.dep"): "", filepath.Join(work, "vmlinuz"): "k", filepath.Join(work, "rootfs.ext4"): s.digest} {
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return Artifacts{}, nil, err
		}
	}
	return Artifacts{Kernel: filepath.Join(work, "vmlinuz"), Rootfs: filepath.Join(work, "rootfs.ext4"), ModulesDir: mods, Digest: s.digest}, nil, nil
}

func newTestService(t *testing.T) (*Service, *memStore) {
	st := &memStore{ims: map[string]model.Image{}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return NewService(ServiceConfig{Layout: paths.Layout{StateDir: t.TempDir()}}, st, nil, nil, log), st
}

// Pulls of different names overlap: both builds are in flight at once
// (a lock held across a build would keep the second waiting for the
// first, which waits for the second).
func TestInstallsOfDifferentNamesOverlap(t *testing.T) {
	s, st := newTestService(t)
	started := make(chan string, 2)
	release := make(chan struct{})
	errs := make(chan error, 2)
	for _, n := range []string{"a", "b"} {
		go func() {
			_, err := s.install(context.Background(), n, &slowSource{digest: "sha256:" + n, started: started, release: release}, phases(func(string) {}), false)
			errs <- err
		}()
	}
	for range 2 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the second build did not start while the first was in flight")
		}
	}
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if ims, _ := st.ListImages(context.Background()); len(ims) != 2 {
		t.Fatalf("images: %v", ims)
	}
}

// Parallel installs of one name with different content: exactly one
// publishes, every other gets a conflict that says why, and nothing of
// the losers is left on disk.
func TestInstallsOfOneNameHaveOneWinner(t *testing.T) {
	s, st := newTestService(t)
	const n = 4
	started := make(chan string, n)
	release := make(chan struct{})
	type res struct {
		im  model.Image
		err error
	}
	results := make(chan res, n)
	for i := range n {
		go func() {
			im, err := s.install(context.Background(), "same", &slowSource{digest: "sha256:" + string(rune('a'+i)), started: started, release: release}, phases(func(string) {}), false)
			results <- res{im, err}
		}()
	}
	for range n {
		<-started // all of them past the first check, building
	}
	close(release)
	var won []string
	conflicts := 0
	for range n {
		r := <-results
		switch {
		case r.err == nil:
			won = append(won, r.im.Digest)
		case errors.Is(r.err, model.ErrConflict):
			conflicts++
		default:
			t.Fatalf("unexpected error: %v", r.err)
		}
	}
	if len(won) != 1 || conflicts != n-1 {
		t.Fatalf("winners %v, conflicts %d", won, conflicts)
	}
	im, err := st.GetImage(context.Background(), "same")
	if err != nil || im.Digest != won[0] {
		t.Fatalf("the record is %+v (%v), the winner %s", im, err, won[0])
	}
	if b, _ := os.ReadFile(im.RootfsPath); string(b) != won[0] {
		t.Fatalf("the files are not the winner's: %q", b)
	}
	entries, _ := os.ReadDir(s.cfg.Layout.ImagesDir())
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if len(names) != 1 {
		t.Fatalf("images directory holds %v, want only the winner", names)
	}

	// The same content again: current, not a conflict.
	started2 := make(chan string, 1)
	rel := make(chan struct{})
	close(rel)
	if _, err := s.install(context.Background(), "same", &slowSource{digest: won[0], started: started2, release: rel}, phases(func(string) {}), false); err != nil {
		t.Fatalf("installing the current content again: %v", err)
	}
}
