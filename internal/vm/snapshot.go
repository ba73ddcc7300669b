package vm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/banger-dev/banger/internal/host/disk"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/vmm"
)

// The files of a snapshot, in its directory.
const (
	snapshotState = "state"
	upperDisk     = "upper.ext4"
	workDisk      = "work.ext4"
)

// runningHandles are vm's handles when it runs: its record says so and
// its VMM's handles are known (what every save of a running VM needs).
func (s *Service) runningHandles(vm model.VM) (vmm.Handles, bool) {
	h, ok := s.handles.get(vm.ID)
	return h, ok && vm.State == model.StateRunning
}

// snapshotter is the VM's driver as a Snapshotter, or a clear error.
func (s *Service) snapshotter(vm model.VM) (vmm.Snapshotter, error) {
	sn, ok := s.driverNamed(vm.Driver).(vmm.Snapshotter)
	if !ok {
		return nil, model.Errorf(model.ErrInvalid, "vm %s runs on the %s driver, which takes no snapshots here", vm.Name, vm.Driver)
	}
	return sn, nil
}

// Snapshot saves a running VM: its memory and device state and copies of
// its writable disks, taken while it is paused so that they match. The VM
// runs on afterwards, also when saving failed (a full disk, say); nothing
// half-written is recorded.
func (s *Service) Snapshot(ctx context.Context, ref, name string) (model.Snapshot, error) {
	if err := model.ValidateName(name); err != nil {
		return model.Snapshot{}, fmt.Errorf("snapshot name: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		h  vmm.Handles
		sn vmm.Snapshotter
	)
	vm, done, err := s.claim(ctx, ref, "taking snapshot "+name, cancel, func(vm model.VM) error {
		var running bool
		if h, running = s.runningHandles(vm); !running {
			return model.Errorf(model.ErrState, "vm %s is %s; a snapshot is taken of a running vm: `banger vm start %s` first", vm.Name, vm.State, vm.Name)
		}
		var err error
		if sn, err = s.snapshotter(vm); err != nil {
			return err
		}
		if _, err := s.store.GetSnapshot(ctx, vm.ID, name); err == nil {
			return model.Errorf(model.ErrConflict, "vm %s has a snapshot %q already; delete it first or choose another name", vm.Name, name)
		}
		return nil
	})
	if err != nil {
		return model.Snapshot{}, err
	}
	defer done()

	start := time.Now()
	tmp, version, err := s.save(ctx, vm, h, sn, name, false)
	if err != nil {
		return model.Snapshot{}, err
	}
	defer os.RemoveAll(tmp) // gone once renamed
	rec := model.Snapshot{VMID: vm.ID, Name: name, Driver: vm.Driver, Version: version, ImageID: vm.ImageID,
		VCPUs: vm.VCPUs, MemoryMiB: vm.MemoryMiB, DiskMiB: vm.DiskMiB, SizeBytes: diskUsage(tmp), CreatedAt: time.Now().UTC()}
	final := s.cfg.Layout.SnapshotDir(vm.ID, name)
	if err := os.Rename(tmp, final); err != nil {
		return model.Snapshot{}, fmt.Errorf("keeping the snapshot: %w", err)
	}
	if err := s.store.InsertSnapshot(context.WithoutCancel(ctx), rec); err != nil {
		_ = os.RemoveAll(final)
		return model.Snapshot{}, err
	}
	s.log.Info("snapshot taken", "vm", vm.Name, "snapshot", name, "bytes", rec.SizeBytes,
		"took", time.Since(start).Round(time.Millisecond))
	return rec, nil
}

// save pauses vm, saves its memory and device state and copies of its
// writable disks into a new directory under its snapshots directory (one
// that start-up sweeps while no record names it), and lets it run on,
// also when saving failed (a full disk, say): a failed save leaves the VM
// as it was and no directory. The caller has claimed vm. A template's
// save may share memory with the VMs started from it (vmm.Templater).
func (s *Service) save(ctx context.Context, vm model.VM, h vmm.Handles, sn vmm.Snapshotter, label string, template bool) (dir, version string, err error) {
	parent := s.cfg.Layout.SnapshotsDir(vm.ID)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", "", fmt.Errorf("creating the snapshots directory: %w", err)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	dir = filepath.Join(parent, ".tmp-"+label+"-"+hex.EncodeToString(rnd[:]))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("creating the snapshot directory: %w", err)
	}
	start := time.Now()
	saveFn := sn.Save
	if tm, ok := sn.(vmm.Templater); ok && template {
		saveFn = tm.SaveTemplate
	}
	version, saveErr := saveFn(ctx, h, filepath.Join(dir, snapshotState))
	saved := time.Since(start)
	if saveErr == nil {
		// Still paused: the disks are copied as the memory left them.
		saveErr = copyDisks(ctx, s.cfg.Layout.VMDir(vm.ID), dir)
	}
	if err := sn.Resume(context.WithoutCancel(ctx), h); err != nil {
		_ = os.RemoveAll(dir)
		return "", "", fmt.Errorf("resuming vm %s after saving it: %w", vm.Name, err)
	}
	// The guest's clock stood still while it was paused: bring it back to
	// the host's now, not at the next periodic sync.
	if err := s.host.SyncClock(context.WithoutCancel(ctx), vm, h); err != nil {
		s.log.Warn("setting the clock of a vm after saving it", "vm", vm.Name, "err", err)
	}
	if saveErr != nil {
		_ = os.RemoveAll(dir)
		var st syscall.Statfs_t
		if syscall.Statfs(parent, &st) == nil {
			if free := int64(st.Bavail) * st.Bsize; free < vm.MemoryMiB<<20 {
				return "", "", fmt.Errorf("saving vm %s: %w; the filesystem of %s has %d MiB free, less than the vm's memory: free some space there and try again",
					vm.Name, saveErr, parent, free>>20)
			}
		}
		return "", "", fmt.Errorf("saving vm %s: %w", vm.Name, saveErr)
	}
	s.log.Debug("vm saved", "vm", vm.Name, "paused", time.Since(start).Round(time.Millisecond), "state", saved.Round(time.Millisecond))
	return dir, version, nil
}

// copyDisks copies the VM's writable disks from one directory to
// another.
func copyDisks(ctx context.Context, from, to string) error {
	for _, d := range []string{upperDisk, workDisk} {
		if err := disk.Copy(ctx, filepath.Join(from, d), filepath.Join(to, d)); err != nil {
			return fmt.Errorf("copying %s: %w", d, err)
		}
	}
	return nil
}

// diskUsage is the bytes the files in dir take on disk.
func diskUsage(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
	}
	return n
}

// Snapshots lists a VM's snapshots.
func (s *Service) Snapshots(ctx context.Context, ref string) (model.VM, []model.Snapshot, error) {
	vm, err := s.store.GetVM(ctx, ref)
	if err != nil {
		return model.VM{}, nil, err
	}
	sns, err := s.store.ListSnapshots(ctx, vm.ID)
	return vm, sns, err
}

// DeleteSnapshot removes one of a VM's snapshots and its files.
func (s *Service) DeleteSnapshot(ctx context.Context, ref, name string) error {
	vm, err := s.store.GetVM(ctx, ref)
	if err != nil {
		return err
	}
	unlock := s.locks.Lock(vm.ID)
	defer unlock()
	if err := s.idle(vm); err != nil {
		return err
	}
	if err := s.store.DeleteSnapshot(ctx, vm.ID, name); err != nil {
		return err
	}
	if err := os.RemoveAll(s.cfg.Layout.SnapshotDir(vm.ID, name)); err != nil {
		return fmt.Errorf("removing the snapshot's files: %w", err)
	}
	return nil
}

// Restore takes a VM back to one of its snapshots: memory, processes and
// disks. A running VM is stopped first (what it did since is dropped);
// the VM then runs on from the moment of the snapshot, its clock brought
// to the host's. A snapshot the VM no longer matches (another QEMU, a
// changed size or image) is refused before anything changes.
func (s *Service) Restore(ctx context.Context, ref, name string) (model.VM, error) {
	vm, err := s.store.GetVM(ctx, ref)
	if err != nil {
		return model.VM{}, err
	}
	snap, err := s.store.GetSnapshot(ctx, vm.ID, name)
	if err != nil {
		return model.VM{}, err
	}
	if err := matches(vm, snap); err != nil {
		return model.VM{}, err
	}
	if _, err := s.snapshotter(vm); err != nil {
		return model.VM{}, err
	}
	if vm.State == model.StateRunning || vm.State == model.StateError {
		if _, err := s.stop(ctx, vm.ID, 0); err != nil {
			return model.VM{}, err
		}
	}
	return s.startFrom(ctx, vm.ID, &savedState{dir: s.cfg.Layout.SnapshotDir(vm.ID, snap.Name), version: snap.Version})
}

// savedState is what a VM can go on from: a directory holding the
// driver's state file and copies of the writable disks (a snapshot's, or
// a fork's), and the version of the VMM that saved it.
type savedState struct {
	dir, version string
	// placed says the disks were copied into the VM's directory already.
	placed bool
}

// matches refuses a snapshot the VM has changed away from.
func matches(vm model.VM, sn model.Snapshot) error {
	switch {
	case sn.Driver != vm.Driver:
		return fmt.Errorf("%w: it was taken on the %s driver and the vm now runs on %s", vmm.ErrSnapshotMismatch, sn.Driver, vm.Driver)
	case sn.VCPUs != vm.VCPUs || sn.MemoryMiB != vm.MemoryMiB || sn.DiskMiB != vm.DiskMiB:
		return fmt.Errorf("%w: it was taken with %d vCPUs, %d MiB of memory and a %d MiB disk, and `vm set` changed the vm to %d, %d and %d", vmm.ErrSnapshotMismatch,
			sn.VCPUs, sn.MemoryMiB, sn.DiskMiB, vm.VCPUs, vm.MemoryMiB, vm.DiskMiB)
	case sn.ImageID != vm.ImageID:
		return fmt.Errorf("%w: it was taken on image %s and the vm is on %s", vmm.ErrSnapshotMismatch, sn.ImageID, vm.ImageID)
	}
	return nil
}

// restoreDisks puts saved disks in place of the VM's, each copied
// beside its target and renamed over it.
func (s *Service) restoreDisks(ctx context.Context, vm model.VM, from string) error {
	dir := s.cfg.Layout.VMDir(vm.ID)
	for _, d := range []string{upperDisk, workDisk} {
		tmp := filepath.Join(dir, ".tmp-restore-"+d)
		_ = os.Remove(tmp)
		if err := disk.Copy(ctx, filepath.Join(from, d), tmp); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("restoring %s: %w", d, err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, d)); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("restoring %s: %w", d, err)
		}
	}
	return nil
}

// markBusy marks VM id busy for why (see idle) until the returned func
// is called; a forced delete meanwhile calls cancel and waits. The caller
// holds the VM's lock.
func (s *Service) markBusy(id, why string, cancel context.CancelFunc) func() {
	u := &upkeep{why: why, work: work{cancel: cancel, done: make(chan struct{})}}
	s.inflightMu.Lock()
	if s.maintaining == nil {
		s.maintaining = map[string]*upkeep{}
	}
	s.maintaining[id] = u
	s.inflightMu.Unlock()
	return func() {
		s.inflightMu.Lock()
		delete(s.maintaining, id)
		s.inflightMu.Unlock()
		cancel()
		close(u.done)
	}
}

// resumeSaved continues an adopted VM that a snapshot paused when the
// daemon taking it died: banger pauses guests for nothing else.
func (s *Service) resumeSaved(ctx context.Context, vm model.VM, h vmm.Handles) {
	sn, ok := s.driverNamed(h.Driver).(vmm.Snapshotter)
	pr, reads := s.driverNamed(h.Driver).(vmm.PauseReader)
	if !ok || !reads {
		return
	}
	if why, err := pr.Paused(ctx, h); err == nil && (why == "paused" || why == "postmigrate") {
		s.log.Info("resuming a vm an interrupted snapshot left paused", "vm", vm.Name)
		if err := sn.Resume(ctx, h); err != nil {
			s.log.Warn("resuming vm", "vm", vm.Name, "err", err)
		}
	}
}

// sweepSnapshots removes what an interrupted snapshot left in VM id's
// snapshots directory: its temporary directory, or files no record names.
func (s *Service) sweepSnapshots(ctx context.Context, id string) {
	dir := s.cfg.Layout.SnapshotsDir(id)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if _, err := s.store.GetSnapshot(ctx, id, e.Name()); err == nil {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err == nil {
			s.log.Info("removed snapshot files no record names", "dir", filepath.Join(dir, e.Name()))
		}
	}
}
