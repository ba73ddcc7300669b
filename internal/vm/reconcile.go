package vm

import (
	"context"
	"fmt"

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
		if err := s.reconcileOne(ctx, vm); err != nil {
			s.log.Error("reconciling vm", "vm", vm.Name, "err", err)
		}
	}
	s.publishRecords(ctx)
	return nil
}

func (s *Service) reconcileOne(ctx context.Context, vm model.VM) error {
	unlock := s.locks.Lock(vm.ID)
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
		msg = "vm process exited while the daemon was not running"
	}
	s.log.Info("vm found dead", "vm", vm.Name, "was", vm.State)
	return s.setState(ctx, &vm, model.StateStopped, msg)
}

// LiveTaps lists the taps that running VMs hold; everything else banger
// owns on the host is free to clean up.
func (s *Service) LiveTaps() []string { return s.handles.taps() }
