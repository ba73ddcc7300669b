package vm

import (
	"context"
	"fmt"
	"os"

	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/paths"
	"github.com/banger-dev/banger/internal/vmm"
)

// MaintenanceFunc works on a VM in a maintenance boot; h are the boot's
// handles (its tunnel is the way in).
type MaintenanceFunc func(ctx context.Context, vm model.VM, h vmm.Handles) error

// Maintain boots a stopped VM in maintenance (its root read-only, nothing
// of its image run), runs fn, and kills the boot. why says what for, in
// the errors of lifecycle calls meanwhile: start, set and delete are
// refused (a forced delete cancels the maintenance). The VM's record stays
// as it was, and no handles file names the boot, so a daemon that dies
// meanwhile leaves nothing running: the next one kills a VMM whose VM is
// not recorded as running.
func (s *Service) Maintain(ctx context.Context, ref, why string, fn MaintenanceFunc) error {
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	vm, done, err := s.claim(ctx, ref, why, cancel, Stopped)
	if err != nil {
		return err
	}
	defer done()

	spec, err := s.host.Maintenance(mctx, vm)
	if err != nil {
		return err
	}
	defer os.Remove(s.cfg.Layout.VMFile(vm.ID, paths.MaintenanceConfig))
	d := s.driverNamed(vm.Driver)
	if err := d.Available(mctx); err != nil {
		return err
	}
	s.log.Info("maintenance boot", "vm", vm.Name, "for", why)
	h, err := d.Start(mctx, spec)
	if err != nil {
		return fmt.Errorf("booting vm %s for maintenance: %w", vm.Name, err)
	}
	rec := context.WithoutCancel(ctx)
	defer func() {
		// Its root is read-only: nothing is lost by killing it.
		if err := d.Stop(rec, h, 0); err != nil {
			s.log.Warn("stopping a maintenance boot", "vm", vm.Name, "err", err)
		}
		_ = d.Cleanup(rec, h)
		_ = s.host.Release(rec, spec.VM, h)
	}()
	if err := s.host.MaintenanceReady(mctx, vm, h); err != nil {
		return err
	}
	return fn(mctx, spec.VM, h)
}

// claim marks VM ref busy for why (see idle) once check passes, both
// under the VM's lock, and returns it with the func that ends the mark; a
// forced delete meanwhile calls cancel and waits for the mark to end.
func (s *Service) claim(ctx context.Context, ref, why string, cancel context.CancelFunc, check func(model.VM) error) (model.VM, func(), error) {
	return s.claimIf(ctx, ref, why, cancel, func(vm model.VM) error {
		if err := s.idle(vm); err != nil {
			return err
		}
		return check(vm)
	})
}

// claimIf is claim with check alone deciding: for work that runs inside
// the VM's own create (leaving a template), which idle would refuse.
func (s *Service) claimIf(ctx context.Context, ref, why string, cancel context.CancelFunc, check func(model.VM) error) (model.VM, func(), error) {
	vm, err := s.store.GetVM(ctx, ref)
	if err != nil {
		return model.VM{}, nil, err
	}
	unlock := s.locks.Lock(vm.ID)
	defer unlock()
	if vm, err = s.store.GetVM(ctx, vm.ID); err != nil {
		return model.VM{}, nil, err
	}
	if err := check(vm); err != nil {
		return model.VM{}, nil, err
	}
	return vm, s.markBusy(vm.ID, why, cancel), nil
}

// Stopped refuses a VM that is not stopped (or created, or broken): what
// a maintenance boot takes are a stopped VM's disks as they are.
func Stopped(vm model.VM) error {
	if vm.State != model.StateStopped && vm.State != model.StateCreated && vm.State != model.StateError {
		return model.Errorf(model.ErrState, "vm %s is %s; its disks are taken as they are when it is stopped: `banger vm stop %s` first", vm.Name, vm.State, vm.Name)
	}
	return nil
}

// idle refuses a lifecycle call on a VM whose create or maintenance is in
// flight. The caller holds the VM's lock.
func (s *Service) idle(vm model.VM) error {
	if opID, ok := s.creatingOp(vm.ID); ok {
		return model.Errorf(model.ErrState, "vm %s is still being created by %s; wait for it (banger op status %s)", vm.Name, opID, opID)
	}
	if why, ok := s.maintenance(vm.ID); ok {
		return model.Errorf(model.ErrState, "vm %s is busy: %s; wait for that to finish", vm.Name, why)
	}
	return nil
}

// stopMaintenance cancels VM id's maintenance boot, if any, and waits
// for it to end.
func (s *Service) stopMaintenance(id string) {
	s.inflightMu.Lock()
	u := s.maintaining[id]
	s.inflightMu.Unlock()
	if u != nil {
		u.cancel()
		<-u.done
	}
}
