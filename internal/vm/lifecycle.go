package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/vmm"
)

// Start boots a VM. Starting a running VM is a no-op; a VM whose create
// operation is still running is refused.
func (s *Service) Start(ctx context.Context, ref string) (model.VM, error) {
	vm, err := s.store.GetVM(ctx, ref)
	if err != nil {
		return model.VM{}, err
	}
	if opID, ok := s.creatingOp(vm.ID); ok {
		return model.VM{}, model.Errorf(model.ErrState, "vm %s is still being created by %s; wait for it (banger op status %s)", vm.Name, opID, opID)
	}
	return s.start(ctx, vm.ID)
}

// start moves the VM to starting under its lock, boots it with the lock
// released, and records the outcome under the lock again.
func (s *Service) start(ctx context.Context, id string) (model.VM, error) {
	return s.startWith(ctx, id, bootPlan{})
}

// bootPlan is how a start boots a VM.
type bootPlan struct {
	// saved: go on from this saved state instead of booting.
	saved *savedState
	// template: a cold boot that will leave a template
	// (vmm.Spec.LeavesTemplate).
	template bool
}

// startFrom is start, going on from saved state sn.
func (s *Service) startFrom(ctx context.Context, id string, sn *savedState) (model.VM, error) {
	return s.startWith(ctx, id, bootPlan{saved: sn})
}

// startWith is start, booting as plan says.
func (s *Service) startWith(ctx context.Context, id string, plan bootPlan) (model.VM, error) {
	unlock := s.locks.Lock(id)
	vm, err := s.store.GetVM(ctx, id)
	if err != nil {
		unlock()
		return model.VM{}, err
	}
	if vm.State == model.StateRunning {
		unlock()
		return vm, nil
	}
	if why, ok := s.maintenance(id); ok {
		unlock()
		return model.VM{}, model.Errorf(model.ErrState, "vm %s is busy: %s; wait for that to finish", vm.Name, why)
	}
	if vm.State.Transitional() {
		unlock()
		return model.VM{}, model.Errorf(model.ErrState, "vm %s is %s; wait for that to finish", vm.Name, vm.State)
	}
	driver := s.driverNamed(vm.Driver)
	if err := driver.Available(ctx); err != nil {
		unlock()
		if vm.Driver != s.driver.Name() && vm.Driver != "none" {
			return model.VM{}, fmt.Errorf("vm %s was created with the %s driver and keeps it: %w", vm.Name, vm.Driver, err)
		}
		return model.VM{}, err
	}
	if vm.Driver != driver.Name() {
		if err := s.store.SetVMDriver(ctx, vm.ID, driver.Name()); err != nil {
			unlock()
			return model.VM{}, err
		}
		vm.Driver = driver.Name()
	}
	if err := s.setState(ctx, &vm, model.StateStarting, ""); err != nil {
		unlock()
		return model.VM{}, err
	}
	bootCtx, cancel := context.WithCancel(ctx)
	w := &work{cancel: cancel, done: make(chan struct{})}
	s.inflightMu.Lock()
	s.boots[id] = w
	s.inflightMu.Unlock()
	unlock()

	defer func() {
		s.inflightMu.Lock()
		delete(s.boots, id)
		s.inflightMu.Unlock()
		cancel()
		close(w.done)
	}()

	s.log.Info("booting vm", "vm", vm.Name, "driver", driver.Name())
	h, bootErr := s.boot(bootCtx, vm, plan)

	unlock = s.locks.Lock(id)
	defer unlock()
	// Record the outcome with a context that outlives the caller: the state
	// must not be left at "starting" because the caller hung up.
	rec := context.WithoutCancel(ctx)
	if bootErr != nil {
		to, msg := model.StateError, bootErr.Error()
		if bootCtx.Err() != nil {
			to, msg = model.StateStopped, "start cancelled"
		}
		if err := s.setState(rec, &vm, to, msg); err != nil {
			s.log.Error("recording failed boot", "vm", vm.Name, "err", err)
		}
		return model.VM{}, fmt.Errorf("starting vm %s: %w", vm.Name, bootErr)
	}
	if err := s.setState(rec, &vm, model.StateRunning, ""); err != nil {
		return model.VM{}, err
	}
	s.log.Info("vm running", "vm", vm.Name, "pid", h.PID)
	return vm, nil
}

// boot boots vm, a second time in a fresh VMM when the guest hung in the
// first (vmm.ErrGuestHung), within the same deadline. With saved state it
// goes on from that instead.
func (s *Service) boot(ctx context.Context, vm model.VM, plan bootPlan) (vmm.Handles, error) {
	if plan.saved != nil {
		return s.restoreOnce(ctx, vm, plan.saved)
	}
	h, err := s.bootOnce(ctx, vm, plan.template)
	if errors.Is(err, vmm.ErrGuestHung) && ctx.Err() == nil {
		s.log.Warn("the guest hung while booting; booting it again", "vm", vm.Name, "err", err)
		h, err = s.bootOnce(ctx, vm, plan.template)
	}
	return h, err
}

// restoreOnce is bootOnce for saved state: its disks put in place of the
// VM's, then a VMM that goes on from its state, and the guest given its
// identity and the host's side of it (clock, SSH, ports) made ready.
func (s *Service) restoreOnce(ctx context.Context, vm model.VM, sn *savedState) (vmm.Handles, error) {
	snap, err := s.snapshotter(vm)
	if err != nil {
		return vmm.Handles{}, err
	}
	if !sn.placed {
		if err := s.restoreDisks(ctx, vm, sn.dir); err != nil {
			return vmm.Handles{}, err
		}
	}
	spec, err := s.host.Prepare(ctx, vm)
	if err != nil {
		return vmm.Handles{}, err
	}
	state := filepath.Join(sn.dir, snapshotState)
	return s.launch(ctx, vm, spec, func(ctx context.Context, spec vmm.Spec) (vmm.Handles, error) {
		return snap.StartFrom(ctx, spec, state, sn.version)
	}, s.host.Resumed)
}

// bootOnce runs the boot steps: host preparation, the VMM, then waiting for
// the guest. Handles are recorded as soon as the VMM runs, so a daemon that
// dies mid-boot can still find the process. On failure everything the
// boot took is released. A boot that will leave a template says so to
// the driver.
func (s *Service) bootOnce(ctx context.Context, vm model.VM, template bool) (vmm.Handles, error) {
	rec := context.WithoutCancel(ctx)
	spec, err := s.host.Prepare(ctx, vm)
	if err != nil {
		return vmm.Handles{}, err
	}
	spec.LeavesTemplate = template
	if spec.VM.ImageID != "" && spec.VM.ImageID != vm.ImageID {
		// The image became local for this boot: from now on the VM
		// boots from this content, whatever its name later refers to.
		if err := s.store.SetVMImageID(ctx, vm.ID, spec.VM.ImageID); err != nil {
			_ = s.host.Release(rec, vm, vmm.Handles{Tap: spec.Tap})
			return vmm.Handles{}, err
		}
	}
	return s.launch(ctx, vm, spec, s.driverNamed(vm.Driver).Start, s.host.Ready)
}

// launch is the end of every boot: the VMM spawned by start, its handles
// recorded as soon as it runs (so a daemon that dies now can still find
// it), then ready waited for. On failure it releases what the boot took.
func (s *Service) launch(ctx context.Context, vm model.VM, spec vmm.Spec,
	start func(context.Context, vmm.Spec) (vmm.Handles, error), ready func(context.Context, model.VM, vmm.Handles) error) (vmm.Handles, error) {
	rec := context.WithoutCancel(ctx)
	began := time.Now()
	h, err := start(ctx, spec)
	if err != nil {
		_ = s.host.Release(rec, vm, vmm.Handles{Tap: spec.Tap})
		return vmm.Handles{}, err
	}
	h.Tap = spec.Tap
	if err := s.handles.put(vm.ID, h); err != nil {
		s.abandon(rec, vm, h)
		return vmm.Handles{}, err
	}
	running := time.Since(began)
	if err := ready(ctx, vm, h); err != nil {
		s.abandon(rec, vm, h)
		return vmm.Handles{}, err
	}
	s.log.Debug("guest ready", "vm", vm.Name, "vmm", running.Round(time.Millisecond), "guest", (time.Since(began) - running).Round(time.Millisecond))
	return h, nil
}

// abandon kills a VM whose boot failed and releases what it held.
func (s *Service) abandon(ctx context.Context, vm model.VM, h vmm.Handles) {
	d := s.driverNamed(h.Driver)
	if err := d.Stop(ctx, h, 0); err != nil {
		s.log.Warn("killing failed boot", "vm", vm.Name, "err", err)
	}
	_ = d.Cleanup(ctx, h)
	_ = s.host.Release(ctx, vm, h)
	_ = s.handles.drop(vm.ID)
}

// Stop shuts a VM down: gracefully, then forcibly after the configured
// timeout. Stopping a stopped VM is a no-op; stopping a booting VM cancels
// the boot.
func (s *Service) Stop(ctx context.Context, ref string) (model.VM, error) {
	vm, err := s.store.GetVM(ctx, ref)
	if err != nil {
		return model.VM{}, err
	}
	return s.stop(ctx, vm.ID, s.stopTimeout())
}

// stop stops a VM, giving the guest up to grace to shut down cleanly (0
// kills it at once).
func (s *Service) stop(ctx context.Context, id string, grace time.Duration) (model.VM, error) {
	for {
		unlock := s.locks.Lock(id)
		vm, err := s.store.GetVM(ctx, id)
		if err != nil {
			unlock()
			return model.VM{}, err
		}
		switch vm.State {
		case model.StateCreated, model.StateStopped:
			unlock()
			return vm, nil
		case model.StateStopping:
			unlock()
			return model.VM{}, model.Errorf(model.ErrState, "vm %s is already stopping", vm.Name)
		case model.StateStarting:
			s.inflightMu.Lock()
			w := s.boots[id]
			s.inflightMu.Unlock()
			unlock()
			if w == nil {
				return model.VM{}, model.Errorf(model.ErrState, "vm %s is starting", vm.Name)
			}
			w.cancel()
			select {
			case <-w.done:
				continue // the boot settled; look again
			case <-ctx.Done():
				return model.VM{}, fmt.Errorf("waiting for vm %s boot to cancel: %w", vm.Name, ctx.Err())
			}
		}
		if why, busy := s.maintenance(id); busy {
			unlock()
			return model.VM{}, model.Errorf(model.ErrState, "vm %s is busy: %s; wait for that to finish", vm.Name, why)
		}
		// Running, or error with possibly something left to tear down.
		return s.shutdown(ctx, &vm, grace, unlock)
	}
}

// shutdown stops a running (or broken) VM. It is entered with the VM's lock
// held (unlock releases it), lets go of it across the driver's stop, and
// returns with it released.
func (s *Service) shutdown(ctx context.Context, vm *model.VM, grace time.Duration, unlock func()) (model.VM, error) {
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()
	h, have := s.handles.get(vm.ID)
	d := s.driverNamed(h.Driver)
	if alive := have && d.Alive(h); vm.State == model.StateError && !alive {
		if have {
			_ = d.Cleanup(ctx, h)
			_ = s.host.Release(ctx, *vm, h)
			_ = s.handles.drop(vm.ID)
		}
		return *vm, s.setState(ctx, vm, model.StateStopped, vm.LastError)
	}
	if vm.State == model.StateRunning {
		if err := s.setState(ctx, vm, model.StateStopping, ""); err != nil {
			return model.VM{}, err
		}
	}
	unlock()
	locked = false
	var stopErr error
	if have {
		s.log.Info("stopping vm", "vm", vm.Name, "pid", h.PID)
		stopErr = d.Stop(ctx, h, grace)
		if stopErr == nil {
			stopErr = d.Cleanup(ctx, h)
		}
		if stopErr == nil {
			stopErr = s.host.Release(ctx, *vm, h)
		}
	}
	unlock = s.locks.Lock(vm.ID)
	locked = true
	rec := context.WithoutCancel(ctx)
	if stopErr != nil {
		_ = s.setState(rec, vm, model.StateError, stopErr.Error())
		return model.VM{}, fmt.Errorf("stopping vm %s: %w", vm.Name, stopErr)
	}
	if err := s.handles.drop(vm.ID); err != nil {
		s.log.Warn("dropping handles", "vm", vm.Name, "err", err)
	}
	if err := s.setState(rec, vm, model.StateStopped, ""); err != nil {
		return model.VM{}, err
	}
	return *vm, nil
}

// Restart stops then starts a VM.
func (s *Service) Restart(ctx context.Context, ref string) (model.VM, error) {
	vm, err := s.Stop(ctx, ref)
	if err != nil {
		return model.VM{}, err
	}
	return s.Start(ctx, vm.ID)
}

// Delete removes a VM and everything banger made for it. A running VM, or
// one still being created, is refused unless force is set; then it is
// killed (or its create cancelled) first.
func (s *Service) Delete(ctx context.Context, ref string, force bool) error {
	vm, err := s.store.GetVM(ctx, ref)
	if err != nil {
		return err
	}
	if opID, ok := s.creatingOp(vm.ID); ok {
		if !force {
			return model.Errorf(model.ErrState, "vm %s is still being created by %s; cancel it with `banger op cancel %s` or delete with --force", vm.Name, opID, opID)
		}
		// Cancelling the create rolls it back, which deletes the VM.
		if _, err := s.ops.Cancel(ctx, opID); err != nil && !errors.Is(err, model.ErrState) {
			return err
		}
		if _, err := s.ops.Wait(ctx, opID); err != nil {
			return err
		}
		// The rollback deleted it: that is what was asked.
		if _, err := s.store.GetVM(ctx, vm.ID); errors.Is(err, model.ErrNotFound) {
			return nil
		}
	}
	return s.remove(ctx, vm.ID, force)
}

// remove deletes the VM's record and directory, stopping it first when
// force is set.
func (s *Service) remove(ctx context.Context, id string, force bool) error {
	if force {
		s.stopMaintenance(id)
	}
	unlock := s.locks.Lock(id)
	vm, err := s.store.GetVM(ctx, id)
	if err != nil {
		unlock()
		return err
	}
	if why, ok := s.maintenance(id); ok {
		unlock()
		return model.Errorf(model.ErrState, "vm %s is busy: %s; wait for that to finish, or delete with --force (which cancels it)", vm.Name, why)
	}
	if !vm.State.Deletable() {
		unlock()
		if !force {
			return model.Errorf(model.ErrState, "vm %s is %s; stop it first or delete with --force", vm.Name, vm.State)
		}
		// The VM and its disks are about to go: no point in a clean
		// shutdown, as with `docker rm -f`.
		if _, err := s.stop(ctx, id, 0); err != nil {
			return err
		}
		return s.remove(ctx, id, false)
	}
	defer unlock()
	if h, ok := s.handles.get(id); ok {
		_ = s.driverNamed(h.Driver).Cleanup(ctx, h)
	}
	if err := s.handles.drop(id); err != nil {
		return err
	}
	s.killStrays(ctx, vm, 0)
	// Record first, files second: a delete killed in between leaves a
	// directory no record owns, which the next start-up removes.
	if err := s.store.DeleteVM(ctx, id); err != nil {
		return err
	}
	if err := os.RemoveAll(s.Dir(vm)); err != nil {
		return fmt.Errorf("removing vm directory: %w", err)
	}
	s.log.Info("vm deleted", "vm", vm.Name, "id", vm.ID)
	s.publishRecords(ctx)
	return nil
}

// Paused says why the VMM paused a running VM by itself ("" if it did
// not, or cannot tell).
func (s *Service) Paused(ctx context.Context, vm model.VM) string {
	if vm.State != model.StateRunning {
		return ""
	}
	h, ok := s.handles.get(vm.ID)
	if !ok {
		return ""
	}
	r, ok := s.driverNamed(h.Driver).(vmm.PauseReader)
	if !ok {
		return ""
	}
	why, err := r.Paused(ctx, h)
	if err != nil {
		return ""
	}
	return why
}

// Handles returns a running VM and its handles, for reaching into the
// guest.
func (s *Service) Handles(ctx context.Context, ref string) (model.VM, vmm.Handles, error) {
	vm, err := s.store.GetVM(ctx, ref)
	if err != nil {
		return model.VM{}, vmm.Handles{}, err
	}
	h, ok := s.handles.get(vm.ID)
	if vm.State != model.StateRunning || !ok {
		return model.VM{}, vmm.Handles{}, model.Errorf(model.ErrState, "vm %s is %s; start it first", vm.Name, vm.State)
	}
	return vm, h, nil
}

// Stats reads a running VM's resource counters from its driver.
func (s *Service) Stats(ctx context.Context, ref string) (model.VM, vmm.Stats, error) {
	vm, h, err := s.Handles(ctx, ref)
	if err != nil {
		return model.VM{}, vmm.Stats{}, err
	}
	r, ok := s.driverNamed(h.Driver).(vmm.StatsReader)
	if !ok {
		return model.VM{}, vmm.Stats{}, model.Errorf(model.ErrUnavailable, "the %s driver does not report stats", h.Driver)
	}
	st, err := r.Stats(ctx, h)
	return vm, st, err
}
