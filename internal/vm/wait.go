package vm

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/banger-dev/banger/internal/model"
)

// WaitRunning returns the VM once it runs. A VM that is being created or
// booted is waited for (until ctx ends); one that is stopped, failed or
// stopping is an ErrState error saying what to do.
func (s *Service) WaitRunning(ctx context.Context, ref string) (model.VM, error) {
	for {
		vm, err := s.store.GetVM(ctx, ref)
		if err != nil {
			return model.VM{}, err
		}
		_, creating := s.creatingOp(vm.ID)
		switch {
		case vm.State == model.StateRunning:
			return vm, nil
		case vm.State == model.StateStarting, vm.State == model.StateCreated && creating:
		case vm.State == model.StateCreated, vm.State == model.StateStopped:
			return model.VM{}, model.Errorf(model.ErrState, "vm %s is %s; start it with `banger vm start %s`", vm.Name, vm.State, vm.Name)
		default:
			msg := ""
			if vm.LastError != "" {
				msg = " (" + vm.LastError + ")"
			}
			return model.VM{}, model.Errorf(model.ErrState, "vm %s is %s%s; `banger vm start %s` boots it again", vm.Name, vm.State, msg, vm.Name)
		}
		select {
		case <-ctx.Done():
			return model.VM{}, model.Errorf(model.ErrState, "vm %s is still %s: %w", vm.Name, vm.State, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// SpaceWarnings says when a VM's sparse disks (root layer and work disk)
// could outgrow the free space of the state directory's filesystem: a
// guest that fills them there pauses on I/O errors.
func (s *Service) SpaceWarnings(vm model.VM, overlayMiB int64) []string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.cfg.Layout.VMsDir(), &st); err != nil {
		if err := syscall.Statfs(s.cfg.Layout.StateDir, &st); err != nil {
			return nil
		}
	}
	free := int64(st.Bavail) * st.Bsize >> 20
	if need := vm.DiskMiB + overlayMiB; need > free {
		return []string{fmt.Sprintf("vm %s's disks may grow to %d MiB but only %d MiB are free on the state directory's filesystem; a guest that fills them will stall", vm.Name, need, free)}
	}
	return nil
}
