package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/banger-dev/banger/internal/atomicfile"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/vmm"
)

// Instant VMs. The first cold boot of a new VM leaves a template: the
// guest saved right after it became ready, before anything of the user's
// ran in it, with copies of its then still fresh disks. A later create of
// a VM that matches it (Host.TemplateKey: image content, initramfs,
// daemon build, driver, vCPUs, memory, disk sizes, network mode) starts
// from that state as a fork does and takes its own identity, instead of
// booting. A VM that matches no template (another --disk, say) boots cold
// and leaves one of its own; a template that fails to restore (another
// QEMU) is removed and the VM boots cold; --cold skips templates.

// templateMeta is a template's template.json.
type templateMeta struct {
	Version   string    `json:"version"`
	Build     string    `json:"build"` // Host.TemplateBuild of the daemon that left it
	ImageID   string    `json:"image_id"`
	Source    string    `json:"source"`
	CreatedAt time.Time `json:"created_at"`
}

const templateMetaFile = "template.json"

// Template is a template as `doctor` shows it.
type Template struct {
	Key, ImageID, Build string
	SizeBytes           int64
	CreatedAt           time.Time
}

// template returns the template vm can start from, or nil (with the key
// a cold boot of vm would leave one under, "" when none is wanted).
func (s *Service) template(ctx context.Context, vm model.VM, cold bool) (string, *savedState) {
	if cold {
		s.log.Debug("booting cold: asked to", "vm", vm.Name)
		return "", nil
	}
	if _, err := s.snapshotter(vm); err != nil {
		return "", nil
	}
	key, err := s.host.TemplateKey(ctx, vm)
	if err != nil {
		s.log.Debug("booting cold: no template key", "vm", vm.Name, "err", err)
		return "", nil
	}
	dir := s.cfg.Layout.TemplateDir(key)
	b, err := os.ReadFile(filepath.Join(dir, templateMetaFile))
	if err != nil {
		s.log.Debug("booting cold: no template yet", "vm", vm.Name, "key", key)
		return key, nil
	}
	var meta templateMeta
	if err := json.Unmarshal(b, &meta); err != nil {
		s.log.Debug("booting cold: an unreadable template", "vm", vm.Name, "key", key, "err", err)
		s.dropTemplate(key)
		return key, nil
	}
	return key, &savedState{dir: dir, version: meta.Version, placed: true}
}

// startFromTemplate starts vm from template t as a fork. It reports
// whether vm runs; when it does not, vm is stopped with fresh disks to
// come (the copies are removed) and the template is gone.
func (s *Service) startFromTemplate(ctx context.Context, vm *model.VM, key string, t *savedState) bool {
	start := time.Now()
	err := s.startFork(ctx, vm, t)
	if err == nil {
		s.log.Info("vm started from a template", "vm", vm.Name, "key", key, "took", time.Since(start).Round(time.Millisecond))
		return true
	}
	s.log.Debug("booting cold: the template did not restore", "vm", vm.Name, "key", key, "err", err)
	s.dropTemplate(key)
	for _, d := range []string{upperDisk, workDisk} {
		_ = os.Remove(s.cfg.Layout.VMFile(vm.ID, d))
	}
	unlock := s.locks.Lock(vm.ID)
	defer unlock()
	if v, err := s.store.GetVM(ctx, vm.ID); err == nil && v.State == model.StateError {
		_ = s.setState(context.WithoutCancel(ctx), &v, model.StateStopped, "")
	}
	return false
}

// leaveTemplate saves vm, just booted cold for the first time, as the
// template under key, unless one is there already. The VM runs on; a
// failure costs only the template.
func (s *Service) leaveTemplate(ctx context.Context, vm model.VM, key string) {
	final := s.cfg.Layout.TemplateDir(key)
	if _, err := os.Stat(final); err == nil {
		return
	}
	sn, err := s.snapshotter(vm)
	if err != nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var h vmm.Handles
	_, done, err := s.claimIf(ctx, vm.ID, "leaving a template", cancel, func(cur model.VM) error {
		var running bool
		if h, running = s.runningHandles(cur); !running {
			return model.Errorf(model.ErrState, "vm %s is %s", cur.Name, cur.State)
		}
		return nil
	})
	if err != nil {
		return // stopped or deleted meanwhile: no template, nothing lost
	}
	defer done()
	start := time.Now()
	dir, version, err := s.save(ctx, vm, h, sn, "template", true)
	if err != nil {
		s.log.Warn("leaving a template", "vm", vm.Name, "err", err)
		return
	}
	defer os.RemoveAll(dir) // gone once renamed
	meta, _ := json.Marshal(templateMeta{Version: version, Build: s.host.TemplateBuild(), ImageID: vm.ImageID, Source: vm.Name, CreatedAt: time.Now().UTC()})
	if err := atomicfile.WriteFile(filepath.Join(dir, templateMetaFile), meta, 0o600); err != nil {
		s.log.Warn("leaving a template", "vm", vm.Name, "err", err)
		return
	}
	if err := os.MkdirAll(s.cfg.Layout.TemplatesDir(), 0o700); err != nil {
		s.log.Warn("leaving a template", "vm", vm.Name, "err", err)
		return
	}
	// Another create may have left one meanwhile: then the rename fails
	// with ENOTEMPTY, and that one serves.
	if err := os.Rename(dir, final); err != nil && !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
		s.log.Warn("leaving a template", "vm", vm.Name, "err", err)
		return
	}
	s.log.Info("left a template for instant vms", "vm", vm.Name, "key", key, "bytes", diskUsage(final), "took", time.Since(start).Round(time.Millisecond))
	s.evictTemplates(vm.ImageID)
}

// maxTemplatesPerImage bounds the templates of one image content (one per
// combination of sizes used): a template takes about as much disk as
// its guest's memory in use, and the oldest go first.
const maxTemplatesPerImage = 4

// evictTemplates removes the oldest templates of image content id beyond
// maxTemplatesPerImage.
func (s *Service) evictTemplates(id string) {
	var same []Template
	for _, t := range s.Templates() {
		if t.ImageID == id {
			same = append(same, t)
		}
	}
	sort.Slice(same, func(i, j int) bool { return same[i].CreatedAt.After(same[j].CreatedAt) })
	for _, t := range same[min(len(same), maxTemplatesPerImage):] {
		s.log.Info("removing the oldest template of an image", "key", t.Key, "image", id)
		s.dropTemplate(t.Key)
	}
}

// dropTemplate removes the template under key.
func (s *Service) dropTemplate(key string) {
	if err := os.RemoveAll(s.cfg.Layout.TemplateDir(key)); err != nil {
		s.log.Warn("removing a template", "key", key, "err", err)
	}
}

// Templates lists the templates and what each takes on disk.
func (s *Service) Templates() []Template {
	entries, _ := os.ReadDir(s.cfg.Layout.TemplatesDir())
	var out []Template
	for _, e := range entries {
		dir := filepath.Join(s.cfg.Layout.TemplatesDir(), e.Name())
		var meta templateMeta
		if b, err := os.ReadFile(filepath.Join(dir, templateMetaFile)); err == nil {
			_ = json.Unmarshal(b, &meta)
		}
		out = append(out, Template{Key: e.Name(), ImageID: meta.ImageID, Build: meta.Build, SizeBytes: diskUsage(dir), CreatedAt: meta.CreatedAt})
	}
	return out
}

// SweepTemplates removes the templates whose image content is gone (an
// image delete or prune took it), that another daemon build left (none
// of its keys can match again), that have no template.json (a save
// interrupted before its rename leaves none here, but a damaged one
// might), or all of them when all is set.
func (s *Service) SweepTemplates(ctx context.Context, all bool) (removed int, err error) {
	// The build is a hash of the daemon's executable: only taken when
	// there is a template to compare (start-up sweeps too).
	var build string
	for _, t := range s.Templates() {
		if build == "" && !all {
			build = s.host.TemplateBuild()
		}
		keep := !all && t.ImageID != "" && t.Build == build
		if keep {
			if _, err := s.store.GetImageContent(ctx, t.ImageID); errors.Is(err, model.ErrNotFound) {
				keep = false
			} else if err != nil {
				return removed, fmt.Errorf("looking up a template's image: %w", err)
			}
		}
		if !keep {
			s.dropTemplate(t.Key)
			removed++
		}
	}
	return removed, nil
}

// Saved is what snapshots and templates take on disk.
type Saved struct {
	Snapshots, Templates         int
	SnapshotBytes, TemplateBytes int64
}

// SavedUsage counts the snapshots of every VM and the templates, and what
// they take on disk.
func (s *Service) SavedUsage(ctx context.Context) (Saved, error) {
	var u Saved
	vms, err := s.store.ListVMs(ctx)
	if err != nil {
		return u, err
	}
	for _, vm := range vms {
		sns, err := s.store.ListSnapshots(ctx, vm.ID)
		if err != nil {
			return u, err
		}
		for _, sn := range sns {
			u.Snapshots++
			u.SnapshotBytes += sn.SizeBytes
		}
	}
	for _, t := range s.Templates() {
		u.Templates++
		u.TemplateBytes += t.SizeBytes
	}
	return u, nil
}
