package vm

import (
	"context"
	"fmt"
	"os"

	"github.com/banger-dev/banger/internal/model"
)

// SetRequest changes a stopped VM's resources; empty fields stay.
type SetRequest struct {
	VCPUs  *int
	Memory string
	Disk   string
}

// Set changes the vCPUs, memory and work disk size of a stopped VM. The
// work disk only grows: its file is extended here (sparse), and the guest's
// agent grows the filesystem at the next boot, so the host never touches a
// filesystem the guest wrote.
func (s *Service) Set(ctx context.Context, ref string, req SetRequest) (model.VM, error) {
	vm, err := s.store.GetVM(ctx, ref)
	if err != nil {
		return model.VM{}, err
	}
	unlock := s.locks.Lock(vm.ID)
	defer unlock()
	if vm, err = s.store.GetVM(ctx, vm.ID); err != nil {
		return model.VM{}, err
	}
	if err := s.idle(vm); err != nil {
		return model.VM{}, err
	}
	if _, creating := s.creatingOp(vm.ID); creating || (vm.State != model.StateStopped && vm.State != model.StateCreated && vm.State != model.StateError) {
		return model.VM{}, model.Errorf(model.ErrState, "vm %s is %s; vCPUs, memory and disk change on a stopped vm: `banger vm stop %s`, then set them, then start it", vm.Name, vm.State, vm.Name)
	}
	next := vm
	if req.VCPUs != nil {
		next.VCPUs = *req.VCPUs
	}
	if err := model.ValidateVCPUs(next.VCPUs); err != nil {
		return model.VM{}, err
	}
	if req.Memory != "" {
		if next.MemoryMiB, err = model.ParseSize("memory", req.Memory); err != nil {
			return model.VM{}, err
		}
	}
	if err := model.ValidateMemory(next.MemoryMiB, s.cfg.HostMemoryMiB); err != nil {
		return model.VM{}, err
	}
	if req.Disk != "" {
		if next.DiskMiB, err = model.ParseSize("disk", req.Disk); err != nil {
			return model.VM{}, err
		}
		if next.DiskMiB < vm.DiskMiB {
			return model.VM{}, model.Errorf(model.ErrInvalid, "disk: %d MiB is smaller than the work disk's %d MiB; the work disk only grows", next.DiskMiB, vm.DiskMiB)
		}
	}
	if err := model.ValidateDisk(next.DiskMiB); err != nil {
		return model.VM{}, err
	}
	if next.DiskMiB > vm.DiskMiB {
		if err := os.Truncate(s.cfg.Layout.VMFile(vm.ID, "work.ext4"), next.DiskMiB<<20); err != nil && !os.IsNotExist(err) {
			return model.VM{}, fmt.Errorf("growing the work disk: %w", err)
		}
	}
	if err := s.store.SetVMResources(ctx, vm.ID, next.VCPUs, next.MemoryMiB, next.DiskMiB); err != nil {
		return model.VM{}, err
	}
	s.log.Info("vm resources changed", "vm", vm.Name, "vcpus", next.VCPUs, "memory_mib", next.MemoryMiB, "disk_mib", next.DiskMiB)
	return next, nil
}
