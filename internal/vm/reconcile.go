package vm

import (
	"context"
	"fmt"
	"time"

	"github.com/banger-dev/banger/internal/model"
)

// Reconcile makes the records match reality when the daemon starts. A VM
// recorded as starting, running or stopping is looked up through its
// handles file: if its process still runs the VM is running (its handles
// go back into the cache); if not, whatever it held is released and it is
// marked stopped. Stops that were in flight are finished.
func (s *Service) Reconcile(ctx context.Context) error {
	vms, err := s.store.ListVMs(ctx)
	if err != nil {
		return fmt.Errorf("reconciling vms: %w", err)
	}
	for _, vm := range vms {
		if vm.State != model.StateStarting && vm.State != model.StateRunning && vm.State != model.StateStopping {
			continue
		}
		if err := s.reconcileOne(ctx, vm, false); err != nil {
			s.log.Error("reconciling vm", "vm", vm.Name, "err", err)
		}
	}
	s.publishRecords(ctx)
	return nil
}

// reconcileOne settles one VM against its process. With onlyRunning (the
// watcher, while lifecycle calls may be in flight) a VM that is no longer
// running when its lock is taken is left to whoever changed it.
func (s *Service) reconcileOne(ctx context.Context, vm model.VM, onlyRunning bool) error {
	unlock := s.locks.Lock(vm.ID)
	if fresh, err := s.store.GetVM(ctx, vm.ID); err == nil {
		vm = fresh
	}
	if onlyRunning && vm.State != model.StateRunning {
		unlock()
		return nil
	}
	h, ok, err := s.handles.load(vm.ID)
	if err != nil {
		s.log.Warn("unreadable handles file", "vm", vm.Name, "err", err)
	}
	d := s.driverNamed(h.Driver)
	alive := ok && d.Alive(h)
	if alive {
		s.handles.seed(vm.ID, h)
		if vm.State == model.StateStopping {
			// The previous daemon died mid-stop: finish the job.
			s.log.Info("finishing interrupted stop", "vm", vm.Name)
			_, err := s.shutdown(ctx, &vm, s.cfg.StopTimeout, unlock)
			return err
		}
		defer unlock()
		s.log.Info("vm still running", "vm", vm.Name, "pid", h.PID)
		return s.setState(ctx, &vm, model.StateRunning, "")
	}
	defer unlock()
	if ok {
		if err := d.Cleanup(ctx, h); err != nil {
			s.log.Warn("cleaning up after dead vm", "vm", vm.Name, "err", err)
		}
		if err := s.host.Release(ctx, vm, h); err != nil {
			s.log.Warn("releasing dead vm's host resources", "vm", vm.Name, "err", err)
		}
	}
	if err := s.handles.drop(vm.ID); err != nil {
		return err
	}
	msg := ""
	if vm.State == model.StateRunning {
		msg = "the vm's process exited"
	}
	s.log.Info("vm found dead", "vm", vm.Name, "was", vm.State)
	return s.setState(ctx, &vm, model.StateStopped, msg)
}

// LiveTaps lists the taps that running VMs hold; everything else banger
// owns on the host is free to clean up.
func (s *Service) LiveTaps() []string { return s.handles.taps() }

// Watch notices VMs whose VMM exits while the daemon runs (a guest that
// powers itself off, a crash, a kill) and tears them down as Reconcile
// would at start-up, every interval until ctx ends.
func (s *Service) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.reapDead(ctx)
	}
}

// reapDead checks every VM with handles once.
func (s *Service) reapDead(ctx context.Context) {
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
		if err := s.reconcileOne(ctx, vm, true); err != nil {
			s.log.Warn("tearing down exited vm", "vm", vm.Name, "err", err)
		}
	}
}
