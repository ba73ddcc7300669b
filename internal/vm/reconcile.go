package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/banger-dev/banger/internal/atomicfile"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/paths"
	"github.com/banger-dev/banger/internal/proc"
	"github.com/banger-dev/banger/internal/vmm"
)

// OpCreate is the kind of a VM's create operation; its target is the VM's
// name.
const OpCreate = "vm.create"

// Reconcile makes the records match reality when the daemon starts. A VM
// recorded as starting, running or stopping is looked up through its
// handles file: if its process still runs the VM is running (its handles
// go back into the cache); if not, whatever it held is released and it is
// marked stopped. Stops that were in flight are finished. The VMs named in
// unfinished were being created when the previous daemon died: their
// creates are rolled back as a failed create is, so that a create either
// succeeded or left nothing. Last, VM directories no record owns (a delete
// or rollback that was interrupted) and half-written files are removed.
func (s *Service) Reconcile(ctx context.Context, unfinished []string) error {
	vms, err := s.store.ListVMs(ctx)
	if err != nil {
		return fmt.Errorf("reconciling vms: %w", err)
	}
	for _, vm := range vms {
		if vm.State != model.StateStarting && vm.State != model.StateRunning && vm.State != model.StateStopping {
			// Not running by the record: any VMM naming its directory is
			// a leftover (a boot killed before it recorded anything).
			s.killStrays(ctx, vm, 0)
			continue
		}
		// A guest that rebooted while no daemon ran is left stopped.
		if _, err := s.reconcileOne(ctx, vm, false); err != nil {
			s.log.Error("reconciling vm", "vm", vm.Name, "err", err)
		}
	}
	for _, name := range unfinished {
		vm, err := s.store.GetVM(ctx, name)
		if err != nil {
			continue
		}
		s.log.Warn("rolling back a create the previous daemon did not finish", "vm", vm.Name, "id", vm.ID)
		if err := s.remove(ctx, vm.ID, true); err != nil && !errors.Is(err, model.ErrNotFound) {
			s.log.Error("rolling back interrupted create", "vm", vm.Name, "err", err)
		}
	}
	// Sessions do not outlive a daemon: every auto-remove VM's is gone.
	if vms, err = s.store.ListVMs(ctx); err == nil {
		for _, vm := range vms {
			if !vm.AutoRemove {
				continue
			}
			s.log.Info("deleting an auto-remove vm whose session ended with the previous daemon", "vm", vm.Name)
			if err := s.remove(ctx, vm.ID, true); err != nil && !errors.Is(err, model.ErrNotFound) {
				s.log.Error("deleting auto-remove vm", "vm", vm.Name, "err", err)
			}
		}
	}
	s.sweepFiles(ctx)
	if _, err := s.SweepTemplates(ctx, false); err != nil {
		s.log.Warn("sweeping templates", "err", err)
	}
	s.publishRecords(ctx)
	return nil
}

// sweepFiles removes VM directories without a record (and the tombstones
// of deletes) and the temporary files of interrupted writes in the rest.
// What it cannot remove, Orphans reports.
func (s *Service) sweepFiles(ctx context.Context) {
	entries, err := os.ReadDir(s.cfg.Layout.VMsDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(s.cfg.Layout.VMsDir(), e.Name())
		if _, err := s.store.GetVM(ctx, e.Name()); err == nil {
			if removed, _ := atomicfile.CleanTemps(dir); len(removed) > 0 {
				s.log.Info("removed half-written files", "dir", dir, "files", removed)
			}
			// No maintenance boot outlives the daemon that made it.
			if err := os.Remove(filepath.Join(dir, paths.MaintenanceConfig)); err == nil {
				s.log.Info("removed the config disk of an interrupted maintenance boot", "dir", dir)
			}
			s.sweepSnapshots(ctx, e.Name())
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			s.log.Warn("removing a vm directory no record owns", "dir", dir, "err", err)
			continue
		}
		s.log.Info("removed a vm directory no record owns", "dir", dir)
	}
}

// Orphans lists the entries of the VMs directory that no VM record owns:
// what an interrupted delete left and start-up could not remove.
func (s *Service) Orphans(ctx context.Context) []string {
	entries, err := os.ReadDir(s.cfg.Layout.VMsDir())
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if _, err := s.store.GetVM(ctx, e.Name()); err != nil {
			out = append(out, filepath.Join(s.cfg.Layout.VMsDir(), e.Name()))
		}
	}
	return out
}

// reconcileOne settles one VM against its process. With onlyRunning (the
// watcher, while lifecycle calls may be in flight) a VM that is no longer
// running when its lock is taken is left to whoever changed it.
func (s *Service) reconcileOne(ctx context.Context, vm model.VM, onlyRunning bool) (rebooted bool, err error) {
	unlock := s.locks.Lock(vm.ID)
	if fresh, err := s.store.GetVM(ctx, vm.ID); err == nil {
		vm = fresh
	}
	if onlyRunning && vm.State != model.StateRunning {
		unlock()
		return false, nil
	}
	h, ok, err := s.handles.load(vm.ID)
	if err != nil {
		s.log.Warn("unreadable handles file", "vm", vm.Name, "err", err)
	}
	d := s.driverNamed(h.Driver)
	alive := ok && d.Alive(h)
	if alive {
		s.handles.seed(vm.ID, h)
		if w, isWatcher := d.(vmm.ExitWatcher); isWatcher {
			w.Watch(h) // adopted by this daemon: watch it as its boot would have
		}
		if vm.State == model.StateStopping {
			// The previous daemon died mid-stop: finish the job.
			s.log.Info("finishing interrupted stop", "vm", vm.Name)
			_, err := s.shutdown(ctx, &vm, s.stopTimeout(), unlock)
			return false, err
		}
		defer unlock()
		s.log.Info("vm still running", "vm", vm.Name, "pid", h.PID)
		s.resumeSaved(ctx, vm, h)
		s.host.Adopted(ctx, vm, h)
		return false, s.setState(ctx, &vm, model.StateRunning, "")
	}
	defer unlock()
	// A boot killed between spawning its VMM and writing the handles file
	// leaves a VMM no handles name: its command line names the VM's
	// directory, which is what finds it.
	s.killStrays(ctx, vm, h.PID)
	exit := vmm.ExitUnknown
	if w, isWatcher := d.(vmm.ExitWatcher); isWatcher && ok {
		exit = w.ExitOf(h) // before Cleanup, which removes what it read
	}
	if ok {
		if err := d.Cleanup(ctx, h); err != nil {
			s.log.Warn("cleaning up after dead vm", "vm", vm.Name, "err", err)
		}
		if err := s.host.Release(ctx, vm, h); err != nil {
			s.log.Warn("releasing dead vm's host resources", "vm", vm.Name, "err", err)
		}
	}
	if err := s.handles.drop(vm.ID); err != nil {
		return false, err
	}
	msg := ""
	wasRunning := vm.State == model.StateRunning
	switch {
	case !wasRunning:
	case exit == vmm.ExitPoweroff:
		s.log.Info("the guest powered itself off", "vm", vm.Name)
	case exit == vmm.ExitReboot && s.rebootAllowed(vm.ID):
		s.log.Info("the guest rebooted; booting it again", "vm", vm.Name)
		return true, s.setState(ctx, &vm, model.StateStopped, "")
	case exit == vmm.ExitReboot:
		msg = fmt.Sprintf("the guest rebooted %d times within %s; left stopped (`banger vm start %s` boots it)", maxReboots, rebootWindow, vm.Name)
	default:
		msg = "the vm's process exited"
	}
	s.log.Info("vm found dead", "vm", vm.Name, "was", vm.State)
	return false, s.setState(ctx, &vm, model.StateStopped, msg)
}

// A guest that reboots more than maxReboots times within rebootWindow (a
// kernel that panics at boot, with panic=-1) is left stopped.
const (
	maxReboots   = 5
	rebootWindow = 5 * time.Minute
)

// rebootAllowed records a reboot of VM id and says whether it is within
// the limit.
func (s *Service) rebootAllowed(id string) bool {
	s.rebootMu.Lock()
	defer s.rebootMu.Unlock()
	if s.reboots == nil {
		s.reboots = map[string][]time.Time{}
	}
	now := time.Now()
	recent := s.reboots[id][:0]
	for _, t := range s.reboots[id] {
		if now.Sub(t) < rebootWindow {
			recent = append(recent, t)
		}
	}
	if len(recent) >= maxReboots {
		s.reboots[id] = recent
		return false
	}
	s.reboots[id] = append(recent, now)
	return true
}

// killStrays kills every VMM process whose command line names vm's
// directory, except keep (the VM's known, live process).
func (s *Service) killStrays(ctx context.Context, vm model.VM, keep int) {
	for _, p := range proc.VMMs(s.Dir(vm)) {
		if p.PID == keep && keep > 0 {
			continue
		}
		s.log.Warn("killing a VMM no handles record", "vm", vm.Name, "pid", p.PID)
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		proc.WaitExit(wctx, p.PID)
		cancel()
	}
}

// LiveTaps lists the taps that running VMs hold; everything else banger
// owns on the host is free to clean up.
func (s *Service) LiveTaps() []string { return s.handles.taps() }

// DefaultClockEvery is how often the daemon brings each running guest's
// clock to the host's. A guest's clock drifts tens of microseconds a
// second here (TCG, TSC clocksource): a few milliseconds between two
// exchanges, far below the 100 ms banger promises.
const DefaultClockEvery = 30 * time.Second

// Watch notices VMs whose VMM exits while the daemon runs (a guest that
// powers itself off, a crash, a kill) and tears them down as Reconcile
// would at start-up, every interval until ctx ends; every
// Config.ClockEvery it also has each running guest's clock set from the
// host's.
func (s *Service) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var clocks sync.WaitGroup // clock rounds and reboots in flight
	defer clocks.Wait()
	var lastClock time.Time
	syncing := new(atomic.Bool)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.reapDead(ctx, &clocks)
		if time.Since(lastClock) >= s.cfg.ClockEvery && syncing.CompareAndSwap(false, true) {
			lastClock = time.Now()
			clocks.Go(func() {
				defer syncing.Store(false)
				s.syncClocks(ctx)
			})
		}
	}
}

// syncClocks runs one clock exchange with every running VM, a few at a
// time. It takes no VM lock: an exchange changes no state, and a stop that
// starts meanwhile waits at most for the exchange's short timeout.
func (s *Service) syncClocks(ctx context.Context) {
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for id, h := range s.handles.snapshot() {
		vm, err := s.store.GetVM(ctx, id)
		if err != nil || vm.State != model.StateRunning {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_ = s.host.SyncClock(ctx, vm, h) // the host logs what went wrong
		})
	}
	wg.Wait()
}

// reapDead checks every VM with handles once, and boots again those whose
// guest rebooted (each on its own, after the VM's lock is free).
func (s *Service) reapDead(ctx context.Context, boots *sync.WaitGroup) {
	for id, h := range s.handles.snapshot() {
		if s.driverNamed(h.Driver).Alive(h) {
			continue
		}
		vm, err := s.store.GetVM(ctx, id)
		if err != nil || vm.State != model.StateRunning {
			// Boots and stops in flight own their VM; they settle it.
			continue
		}
		s.log.Info("vm process exited", "vm", vm.Name, "pid", h.PID)
		rebooted, err := s.reconcileOne(ctx, vm, true)
		if err != nil {
			s.log.Warn("tearing down exited vm", "vm", vm.Name, "err", err)
		}
		if rebooted {
			boots.Go(func() {
				if _, err := s.start(ctx, vm.ID); err != nil {
					s.log.Warn("booting a rebooted guest again", "vm", vm.Name, "err", err)
				}
			})
		}
	}
}
