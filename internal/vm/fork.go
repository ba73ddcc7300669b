package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/vmm"
)

// MaxForks is the most copies one fork makes.
const MaxForks = 32

// ForkNames are the names of count forks called name: name itself for
// one, else name-1 … name-count.
func ForkNames(name string, count int) []string {
	if count == 1 {
		return []string{name}
	}
	out := make([]string, count)
	for i := range out {
		out[i] = name + "-" + strconv.Itoa(i+1)
	}
	return out
}

// Fork makes count new VMs (see ForkNames), each a copy of the running VM
// ref as it is this moment: memory and running processes, root layer and
// /work, and its workspace records (so each exports to a branch of its
// own). The source is paused only while it is saved, then runs on. Each
// copy then takes an identity of its own (name, address, MAC, SSH host
// key, machine-id, a reseeded RNG, the host's clock) before it counts as
// running. Copies publish no ports: the source's are its own. Either all
// copies run or none is left: a failure removes every one, and the
// records are marked auto-remove until then, so a daemon killed midway
// leaves none at its next start-up.
func (s *Service) Fork(ctx context.Context, ref, name string, count int) ([]model.VM, error) {
	if count < 1 || count > MaxForks {
		return nil, model.Errorf(model.ErrInvalid, "fork count %d is out of range: make 1 to %d copies at once", count, MaxForks)
	}
	names := ForkNames(name, count)
	for _, n := range names {
		if err := model.ValidateName(n); err != nil {
			return nil, fmt.Errorf("fork name: %w", err)
		}
	}
	// saveCtx ends with the claim on the source (and when a forced delete
	// of it cancels the save); the copies start after that.
	saveCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		h  vmm.Handles
		sn vmm.Snapshotter
	)
	src, done, err := s.claim(saveCtx, ref, "forking into "+names[0], cancel, func(vm model.VM) error {
		var running bool
		if h, running = s.runningHandles(vm); !running {
			return model.Errorf(model.ErrState, "vm %s is %s; a fork copies a running vm's memory and processes: `banger vm start %s` first (a fresh vm: `banger vm create --image %s`)", vm.Name, vm.State, vm.Name, vm.Image)
		}
		if vm.Driver != s.driver.Name() {
			return model.Errorf(model.ErrInvalid, "vm %s runs on the %s driver and new vms on %s; fork it where it was made", vm.Name, vm.Driver, s.driver.Name())
		}
		var err error
		sn, err = s.snapshotter(vm)
		return err
	})
	if err != nil {
		return nil, err
	}
	released := false
	release := func() {
		if !released {
			released = true
			done()
		}
	}
	defer release()

	forks, err := s.reserveForks(ctx, src, names)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			s.dropForks(context.WithoutCancel(ctx), forks)
		}
	}()

	start := time.Now()
	dir, version, err := s.save(saveCtx, src, h, sn, "fork", false)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	release() // the source runs on; the copies come from dir
	saved := time.Since(start)

	st := &savedState{dir: dir, version: version, placed: true}
	errs := make([]error, len(forks))
	var wg sync.WaitGroup
	for i := range forks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.startFork(ctx, &forks[i], st)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("forking vm %s: %w", src.Name, err)
	}
	if err := s.copyWorkspaces(ctx, src, forks); err != nil {
		return nil, err
	}
	for i := range forks {
		if err := s.store.SetVMAutoRemove(context.WithoutCancel(ctx), forks[i].ID, false); err != nil {
			return nil, err
		}
		forks[i].AutoRemove = false
	}
	ok = true
	s.log.Info("vm forked", "vm", src.Name, "copies", len(forks), "save", saved.Round(time.Millisecond), "took", time.Since(start).Round(time.Millisecond))
	return forks, nil
}

// reserveForks reserves a VM record for each name, shaped as src (image
// content, vCPUs, memory, disk, network) and marked auto-remove. On
// failure none is left.
func (s *Service) reserveForks(ctx context.Context, src model.VM, names []string) ([]model.VM, error) {
	forks := make([]model.VM, 0, len(names))
	for _, n := range names {
		vm := model.VM{Name: n, Image: src.Image, ImageID: src.ImageID, VCPUs: src.VCPUs, MemoryMiB: src.MemoryMiB,
			DiskMiB: src.DiskMiB, Network: src.Network, AutoRemove: true}
		if err := s.reserve(ctx, &vm); err != nil {
			s.dropForks(context.WithoutCancel(ctx), forks)
			return nil, err
		}
		forks = append(forks, vm)
	}
	return forks, nil
}

// dropForks removes forks a failed fork made.
func (s *Service) dropForks(ctx context.Context, forks []model.VM) {
	for _, f := range forks {
		if err := s.remove(ctx, f.ID, true); err != nil && !errors.Is(err, model.ErrNotFound) {
			s.log.Error("removing a failed fork", "vm", f.Name, "err", err)
		}
	}
	s.publishRecords(ctx)
}

// startFork gives fork its copy of the saved disks and its lasting files
// (an SSH host key of its own), then starts it from the saved state.
func (s *Service) startFork(ctx context.Context, fork *model.VM, st *savedState) error {
	if err := os.MkdirAll(s.Dir(*fork), 0o700); err != nil {
		return fmt.Errorf("creating vm directory: %w", err)
	}
	if err := s.restoreDisks(ctx, *fork, st.dir); err != nil {
		return err
	}
	if err := s.host.Created(ctx, *fork, false, func(string) {}); err != nil {
		return err
	}
	vm, err := s.startFrom(ctx, fork.ID, st)
	if err != nil {
		return err
	}
	*fork = vm
	return nil
}

// copyWorkspaces gives each fork the source's workspace records, without
// the source's export branch: a fork exports to its own.
func (s *Service) copyWorkspaces(ctx context.Context, src model.VM, forks []model.VM) error {
	ws, err := s.store.ListWorkspaces(ctx, src.ID)
	if err != nil {
		return err
	}
	for _, f := range forks {
		for _, w := range ws {
			w.VMID, w.ExportBranch, w.ExportCommit = f.ID, "", ""
			if err := s.store.PutWorkspace(ctx, w); err != nil {
				return err
			}
		}
	}
	return nil
}
