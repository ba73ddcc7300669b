package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The build cache: one directory per recipe, built once.
//
//	<cacheDir>/<key>.lock        flock serialising builders of one recipe (never removed)
//	<cacheDir>/<key>/            a finished entry, renamed into place whole:
//	    vmlinuz  rootfs.ext4  modules/<kver>/  artifacts.json
//	<cacheDir>/.build-<key>-*/   a build in progress (out/, work/); stale ones
//	                             are removed by the next builder of that key
//
// <key> is the first 16 hex digits of sha256(opts.Recipe()).
const cacheManifest = "artifacts.json"

// cacheEntry is artifacts.json: the artifacts with paths relative to the
// entry, and the recipe that made them.
type cacheEntry struct {
	Recipe    string    `json:"recipe"`
	Artifacts Artifacts `json:"artifacts"`
	BuiltAt   time.Time `json:"built_at"`
}

// CachedDebian returns the artifacts for opts' recipe from cacheDir,
// building them with BuildDebian the first time. opts.WorkDir and
// opts.OutDir are ignored: the build happens in cacheDir and its result is
// renamed into place, so an entry is either whole or absent. Concurrent
// callers (goroutines or processes) of one recipe wait for a single build.
func CachedDebian(ctx context.Context, cacheDir string, opts DebianOptions, progress func(string)) (Artifacts, error) {
	return hostTools.cachedDebian(ctx, cacheDir, opts, progress)
}

func (t tools) cachedDebian(ctx context.Context, cacheDir string, opts DebianOptions, progress func(string)) (Artifacts, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return Artifacts{}, err
	}
	if cacheDir == "" {
		return Artifacts{}, errors.New("image cache: no cache directory")
	}
	cacheDir, err := filepath.Abs(cacheDir)
	if err != nil {
		return Artifacts{}, fmt.Errorf("image cache: %w", err)
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return Artifacts{}, fmt.Errorf("creating image cache: %w", err)
	}
	key := opts.RecipeKey()
	entry := filepath.Join(cacheDir, key)
	if art, err := loadCacheEntry(entry); err == nil {
		return art, nil
	}

	unlock, err := lockFile(ctx, filepath.Join(cacheDir, key+".lock"))
	if err != nil {
		return Artifacts{}, err
	}
	defer unlock()
	// Another builder may have finished while we waited.
	if art, err := loadCacheEntry(entry); err == nil {
		return art, nil
	}
	// Under the lock, anything else for this key is a leftover: an entry
	// without a valid manifest, or a build whose process died.
	if err := removeAllUnmounted(entry); err != nil {
		return Artifacts{}, err
	}
	stale, _ := filepath.Glob(filepath.Join(cacheDir, ".build-"+key+"-*"))
	for _, s := range stale {
		if err := removeAllUnmounted(s); err != nil {
			return Artifacts{}, err
		}
	}

	tmp, err := os.MkdirTemp(cacheDir, ".build-"+key+"-")
	if err != nil {
		return Artifacts{}, fmt.Errorf("image cache: %w", err)
	}
	defer func() { _ = removeAllUnmounted(tmp) }()
	opts.OutDir = filepath.Join(tmp, "out")
	opts.WorkDir = filepath.Join(tmp, "work")
	art, err := t.buildDebian(ctx, opts, progress)
	if err != nil {
		return Artifacts{}, err
	}
	rel, err := relativeArtifacts(art, opts.OutDir)
	if err != nil {
		return Artifacts{}, err
	}
	manifest, err := json.MarshalIndent(cacheEntry{Recipe: opts.Recipe(), Artifacts: rel, BuiltAt: time.Now().UTC()}, "", "  ")
	if err != nil {
		return Artifacts{}, fmt.Errorf("image cache: %w", err)
	}
	if err := os.WriteFile(filepath.Join(opts.OutDir, cacheManifest), append(manifest, '\n'), 0o644); err != nil {
		return Artifacts{}, fmt.Errorf("image cache: %w", err)
	}
	if err := os.Rename(opts.OutDir, entry); err != nil {
		return Artifacts{}, fmt.Errorf("image cache: %w", err)
	}
	return loadCacheEntry(entry)
}

func relativeArtifacts(a Artifacts, dir string) (Artifacts, error) {
	for _, p := range []*string{&a.Kernel, &a.ModulesDir, &a.Rootfs} {
		r, err := filepath.Rel(dir, *p)
		if err != nil || strings.HasPrefix(r, "..") {
			return Artifacts{}, fmt.Errorf("image cache: artifact %s is outside %s", *p, dir)
		}
		*p = r
	}
	return a, nil
}

// loadCacheEntry reads a finished entry and checks that its files are
// there.
func loadCacheEntry(dir string) (Artifacts, error) {
	data, err := os.ReadFile(filepath.Join(dir, cacheManifest))
	if err != nil {
		return Artifacts{}, err
	}
	var e cacheEntry
	if err := json.Unmarshal(data, &e); err != nil {
		return Artifacts{}, fmt.Errorf("image cache entry %s: %w", dir, err)
	}
	a := e.Artifacts
	for _, p := range []*string{&a.Kernel, &a.ModulesDir, &a.Rootfs} {
		if *p == "" || filepath.IsAbs(*p) || strings.HasPrefix(filepath.Clean(*p), "..") {
			return Artifacts{}, fmt.Errorf("image cache entry %s: bad path %q", dir, *p)
		}
		*p = filepath.Join(dir, *p)
		if _, err := os.Stat(*p); err != nil {
			return Artifacts{}, fmt.Errorf("image cache entry %s: %w", dir, err)
		}
	}
	if _, err := os.Stat(filepath.Join(a.ModulesDir, "modules.dep")); err != nil {
		return Artifacts{}, fmt.Errorf("image cache entry %s: %w", dir, err)
	}
	return a, nil
}

// lockFile takes an exclusive flock on path, waiting (cancellably) while
// another holder has it. The lock goes with the descriptor, so a process
// that dies releases it.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("image cache lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("image cache lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for another build of this image: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
