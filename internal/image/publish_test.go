package image

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/paths"
)

// memStore is a state-holding fake of the image tables: names referring
// to contents, and the contents fake VMs use.
type memStore struct {
	mu       sync.Mutex
	names    map[string]string // name → content ID
	contents map[string]model.Image
	vmUses   map[string]bool // content IDs a VM was created from
}

func newMemStore() *memStore {
	return &memStore{names: map[string]string{}, contents: map[string]model.Image{}, vmUses: map[string]bool{}}
}

func (m *memStore) InsertImage(_ context.Context, im model.Image, replace bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.names[im.Name]; ok && !replace {
		return model.Errorf(model.ErrConflict, "image %q exists", im.Name)
	}
	if _, ok := m.contents[im.ID]; !ok {
		c := im
		c.Name = ""
		m.contents[im.ID] = c
	}
	m.names[im.Name] = im.ID
	return nil
}

func (m *memStore) named(id string) string {
	var names []string
	for n, c := range m.names {
		if c == id {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

func (m *memStore) GetImage(_ context.Context, name string) (model.Image, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.names[name]
	if !ok {
		return model.Image{}, model.Errorf(model.ErrNotFound, "no image %q", name)
	}
	im := m.contents[id]
	im.Name = name
	return im, nil
}

func (m *memStore) GetImageContent(_ context.Context, id string) (model.Image, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	im, ok := m.contents[id]
	if !ok {
		return model.Image{}, model.Errorf(model.ErrNotFound, "no image %s", id)
	}
	im.Name = m.named(id)
	return im, nil
}

func (m *memStore) ListImages(context.Context) ([]model.Image, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []model.Image
	for n, id := range m.names {
		im := m.contents[id]
		im.Name = n
		out = append(out, im)
	}
	for id, im := range m.contents {
		if m.named(id) == "" {
			out = append(out, im)
		}
	}
	return out, nil
}

func (m *memStore) DeleteImage(_ context.Context, name string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.names[name]
	if !ok {
		return "", model.Errorf(model.ErrNotFound, "no image %q", name)
	}
	if m.vmUses[id] {
		return "", model.Errorf(model.ErrState, "image %q is used by a vm", name)
	}
	delete(m.names, name)
	return id, nil
}

func (m *memStore) DeleteImageContent(_ context.Context, id string) (model.Image, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	im, ok := m.contents[id]
	if !ok {
		return model.Image{}, model.Errorf(model.ErrNotFound, "no image %s", id)
	}
	if m.vmUses[id] || m.named(id) != "" {
		return model.Image{}, model.Errorf(model.ErrState, "image %s is in use", id)
	}
	delete(m.contents, id)
	return im, nil
}

func (m *memStore) useByVM(id string, used bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.vmUses[id] = used
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
	st := newMemStore()
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

func quick(digest string) *slowSource {
	rel := make(chan struct{})
	close(rel)
	return &slowSource{digest: digest, started: make(chan string, 1), release: rel}
}

func imageDirs(t *testing.T, s *Service) []string {
	t.Helper()
	entries, _ := os.ReadDir(s.cfg.Layout.ImagesDir())
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// A moved tag repoints the name; the VM built on the old content keeps
// its files until it goes, and then a prune removes them.
func TestReplacingANameKeepsTheContentAVMUses(t *testing.T) {
	ctx := context.Background()
	s, st := newTestService(t)
	old, err := s.install(ctx, "app", quick("sha256:old"), phases(func(string) {}), true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(old.ID, "sha256:") || old.ID == old.Digest {
		t.Fatalf("content id %q", old.ID)
	}
	st.useByVM(old.ID, true)
	cur, err := s.install(ctx, "app", quick("sha256:new"), phases(func(string) {}), true)
	if err != nil {
		t.Fatal(err)
	}
	if cur.ID == old.ID || cur.Digest != "sha256:new" {
		t.Fatalf("replaced image %+v", cur)
	}
	if b, err := os.ReadFile(old.RootfsPath); err != nil || string(b) != "sha256:old" {
		t.Fatalf("the old content's files under its vm: %q %v", b, err)
	}
	ims, _ := s.List(ctx)
	if len(ims) != 2 {
		t.Fatalf("list %+v, want the name and the unnamed old content", ims)
	}
	if err := s.Delete(ctx, "app"); err != nil {
		t.Fatalf("deleting a name whose content no vm uses: %v", err)
	}
	if _, err := os.Stat(cur.RootfsPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("deleted image's files remain: %v", err)
	}
	res, err := s.Prune(ctx, false)
	if err != nil || len(res.Images) != 0 {
		t.Fatalf("prune while the vm lives removed %v (%v)", res.Images, err)
	}
	st.useByVM(old.ID, false)
	// A leftover of a crash: files no record refers to.
	if err := os.MkdirAll(filepath.Join(s.cfg.Layout.ImagesDir(), "sha256-0000"), 0o750); err != nil {
		t.Fatal(err)
	}
	if res, err = s.Prune(ctx, false); err != nil || len(res.Images) != 1 || res.Images[0] != old.ID {
		t.Fatalf("prune after the vm went: %v %v", res.Images, err)
	}
	if dirs := imageDirs(t, s); len(dirs) != 0 {
		t.Fatalf("images directory holds %v after the prune", dirs)
	}
}

// Two names of one content share its files; deleting one keeps them.
func TestNamesShareContent(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t)
	a, err := s.install(ctx, "a", quick("sha256:x"), phases(func(string) {}), false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.install(ctx, "b", quick("sha256:x"), phases(func(string) {}), false)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID || a.RootfsPath != b.RootfsPath || len(imageDirs(t, s)) != 1 {
		t.Fatalf("a %+v b %+v dirs %v", a, b, imageDirs(t, s))
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b.RootfsPath); err != nil {
		t.Fatalf("b lost its files with a: %v", err)
	}
}
