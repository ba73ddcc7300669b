package vm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/banger-dev/banger/internal/paths"
	"github.com/banger-dev/banger/internal/vmm"

	"github.com/banger-dev/banger/internal/atomicfile"
)

// handleCache holds running VMs' transient handles in memory and mirrors
// each to the VM's handles file, which is how a restarted daemon finds its
// VMs again. Its mutex is a leaf; file I/O happens outside it.
type handleCache struct {
	layout paths.Layout
	mu     sync.Mutex
	m      map[string]vmm.Handles
}

func (c *handleCache) get(id string) (vmm.Handles, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[id]
	return h, ok
}

// put records h in memory and in the handles file, written atomically.
func (c *handleCache) put(id string, h vmm.Handles) error {
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding handles: %w", err)
	}
	if err := atomicfile.WriteFile(c.layout.HandlesFile(id), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing handles file: %w", err)
	}
	c.mu.Lock()
	c.m[id] = h
	c.mu.Unlock()
	return nil
}

// drop forgets id's handles, in memory and on disk.
func (c *handleCache) drop(id string) error {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
	if err := os.Remove(c.layout.HandlesFile(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing handles file: %w", err)
	}
	return nil
}

// load reads id's handles file. ok is false when there is none.
func (c *handleCache) load(id string) (h vmm.Handles, ok bool, err error) {
	b, err := os.ReadFile(c.layout.HandlesFile(id))
	if errors.Is(err, fs.ErrNotExist) {
		return vmm.Handles{}, false, nil
	}
	if err != nil {
		return vmm.Handles{}, false, fmt.Errorf("reading handles file: %w", err)
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return vmm.Handles{}, false, fmt.Errorf("handles file %s is corrupt: %w", filepath.Base(c.layout.HandlesFile(id)), err)
	}
	return h, true, nil
}

// seed puts handles read back from disk into memory.
func (c *handleCache) seed(id string, h vmm.Handles) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[id] = h
}

// taps lists the taps held by VMs in the cache.
func (c *handleCache) taps() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, h := range c.m {
		if h.Tap != "" {
			out = append(out, h.Tap)
		}
	}
	return out
}

// snapshot copies the cache.
func (c *handleCache) snapshot() map[string]vmm.Handles {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]vmm.Handles, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}
