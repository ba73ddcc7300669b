package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/op"
)

// CreateRequest is what a caller asks for. Sizes are as the user typed them;
// empty fields take the configured defaults.
type CreateRequest struct {
	Name  string
	Image string
	// VCPUs is nil for the default; an explicit 0 is refused.
	VCPUs   *int
	Memory  string
	Disk    string
	NoStart bool
	// Cold boots the VM even when a template would start it at once.
	Cold bool
	// Publish are --publish values, HOSTPORT:GUESTPORT[/tcp].
	Publish []string
	// Network is model.NetworkBridge (also for "") or model.NetworkNone.
	Network string
	// Session, when set, ties the VM to the caller's session: the VM is
	// deleted when it closes (and at the next start-up if the daemon
	// stops first), whatever happened to the client.
	Session <-chan struct{}
}

// Create validates req, reserves the VM (name, IP, record) and starts an
// operation that prepares and, unless NoStart, boots it. Bad input, a name
// in use or a missing driver fail here, before anything is reserved.
func (s *Service) Create(ctx context.Context, req CreateRequest) (model.VM, model.Operation, error) {
	vm, err := s.resolve(ctx, req)
	if err != nil {
		return model.VM{}, model.Operation{}, err
	}
	if !req.NoStart {
		if err := s.driver.Available(ctx); err != nil {
			return model.VM{}, model.Operation{}, err
		}
	}
	vm.AutoRemove = req.Session != nil
	if err := s.reserve(ctx, &vm); err != nil {
		return model.VM{}, model.Operation{}, err
	}
	if req.Session != nil {
		go s.removeWhenGone(ctx, vm, req.Session)
	}

	c := &creation{}
	s.inflightMu.Lock()
	s.creating[vm.ID] = c
	s.inflightMu.Unlock()
	o := s.ops.Begin(OpCreate, vm.Name, func(ctx context.Context, p *op.Progress) error {
		defer func() {
			s.inflightMu.Lock()
			delete(s.creating, vm.ID)
			s.inflightMu.Unlock()
		}()
		return s.finishCreate(ctx, p, vm, req.NoStart, req.Cold)
	})
	s.inflightMu.Lock()
	c.opID = o.ID
	s.inflightMu.Unlock()
	s.log.Info("vm reserved", "vm", vm.Name, "id", vm.ID, "ip", vm.IP, "op", o.ID)
	s.publishRecords(ctx)
	return vm, o, nil
}

// removeWhenGone deletes an auto-remove VM when its session closes. If the
// daemon stops first (life ends), the VM keeps its mark and the next
// start-up deletes it.
func (s *Service) removeWhenGone(life context.Context, vm model.VM, session <-chan struct{}) {
	select {
	case <-session:
	case <-life.Done():
		select {
		case <-session:
		default:
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(life), s.stopTimeout()+time.Minute)
	defer cancel()
	s.log.Info("the session of an auto-remove vm ended; deleting it", "vm", vm.Name)
	if err := s.Delete(ctx, vm.ID, true); err != nil && !errors.Is(err, model.ErrNotFound) {
		s.log.Error("deleting auto-remove vm", "vm", vm.Name, "err", err)
	}
}

// resolve fills defaults and validates every field.
func (s *Service) resolve(ctx context.Context, req CreateRequest) (model.VM, error) {
	def := s.currentDefaults()
	vm := model.VM{Name: req.Name, Image: req.Image, VCPUs: def.VCPUs,
		MemoryMiB: def.MemoryMiB, DiskMiB: def.DiskMiB}
	if err := model.ValidateName(vm.Name); err != nil {
		return model.VM{}, err
	}
	maps, err := model.ParsePortMaps(req.Publish)
	if err != nil {
		return model.VM{}, err
	}
	vm.Publish = maps
	vm.Network = model.NetworkBridge
	if req.Network != "" {
		if err := model.ValidateNetwork(req.Network); err != nil {
			return model.VM{}, err
		}
		vm.Network = req.Network
	}
	if req.VCPUs != nil {
		vm.VCPUs = *req.VCPUs
	}
	if err := model.ValidateVCPUs(vm.VCPUs); err != nil {
		return model.VM{}, err
	}
	if req.Memory != "" {
		if vm.MemoryMiB, err = model.ParseSize("memory", req.Memory); err != nil {
			return model.VM{}, err
		}
	}
	if err := model.ValidateMemory(vm.MemoryMiB, s.cfg.HostMemoryMiB); err != nil {
		return model.VM{}, err
	}
	if req.Disk != "" {
		if vm.DiskMiB, err = model.ParseSize("disk", req.Disk); err != nil {
			return model.VM{}, err
		}
	}
	if err := model.ValidateDisk(vm.DiskMiB); err != nil {
		return model.VM{}, err
	}
	if vm.Image == "" {
		vm.Image = def.Image
	}
	if err := model.ValidateImageRef(vm.Image); err != nil {
		return model.VM{}, err
	}
	if im, err := s.store.GetImage(ctx, vm.Image); err == nil {
		vm.ImageID = im.ID
	} else {
		if !errors.Is(err, model.ErrNotFound) {
			return model.VM{}, err
		}
		if _, ok := s.catalog.Lookup(vm.Image); !ok {
			return model.VM{}, model.Errorf(model.ErrNotFound, "image %q is neither registered nor in the catalog (catalog: %s)", vm.Image, strings.Join(s.catalog.Names(), ", "))
		}
	}
	return vm, nil
}

// reserve is the only window shared by all creates: under reserveMu it
// rechecks the name, allocates the next free IP and inserts the record.
// It lasts milliseconds; nothing slow happens inside.
func (s *Service) reserve(ctx context.Context, vm *model.VM) error {
	s.reserveMu.Lock()
	defer s.reserveMu.Unlock()
	// GetVM also matches ID prefixes: only a VM of this very name clashes.
	if existing, err := s.store.GetVM(ctx, vm.Name); err == nil && existing.Name == vm.Name {
		return model.Errorf(model.ErrConflict, "vm name %q is already in use (vm %s); choose another name or delete it first", vm.Name, existing.ID)
	} else if err != nil && !errors.Is(err, model.ErrNotFound) && !errors.Is(err, model.ErrConflict) {
		return err
	}
	if err := s.portsFree(ctx, vm.Publish); err != nil {
		return err
	}
	vm.ID = model.NewID()
	if vm.NetworkMode() == model.NetworkNone {
		// No NIC; the MAC only keeps the column unique.
		vm.MAC = "02:fe:" + vm.ID[:2] + ":" + vm.ID[2:4] + ":" + vm.ID[4:6] + ":" + vm.ID[6:8]
	} else {
		used, err := s.store.LeasedIPs(ctx)
		if err != nil {
			return err
		}
		ip, err := nextFreeIP(s.cfg.Subnet, used)
		if err != nil {
			return err
		}
		vm.IP = ip.String()
		vm.MAC = macFor(ip)
	}
	now := time.Now().UTC()
	vm.State = model.StateCreated
	vm.Driver = s.driver.Name()
	vm.CreatedAt, vm.UpdatedAt = now, now
	return s.store.InsertVM(ctx, *vm)
}

// portsFree refuses host ports another VM publishes. (Whether something
// else on the host holds one shows when the boot binds it.)
func (s *Service) portsFree(ctx context.Context, maps []model.PortMap) error {
	if len(maps) == 0 {
		return nil
	}
	vms, err := s.store.ListVMs(ctx)
	if err != nil {
		return err
	}
	for _, other := range vms {
		for _, o := range other.Publish {
			for _, p := range maps {
				if p.Host == o.Host {
					return model.Errorf(model.ErrConflict, "host port %d is already published by vm %s; pick another (--publish OTHER:%d)", p.Host, other.Name, p.Guest)
				}
			}
		}
	}
	return nil
}

// finishCreate is the body of a create operation. On failure or
// cancellation it removes everything reserved, so a failed create leaves no
// VM behind.
func (s *Service) finishCreate(ctx context.Context, p *op.Progress, vm model.VM, noStart, cold bool) (err error) {
	defer func() {
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("creating vm %s: %w", vm.Name, ctx.Err())
		}
		rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.stopTimeout()+30*time.Second)
		defer cancel()
		if rbErr := s.remove(rbCtx, vm.ID, true); rbErr != nil && !errors.Is(rbErr, model.ErrNotFound) {
			s.log.Error("rolling back vm create", "vm", vm.Name, "err", rbErr)
		}
	}()
	p.Phase("preparing", 0)
	if err := os.MkdirAll(s.Dir(vm), 0o700); err != nil {
		return fmt.Errorf("creating vm directory: %w", err)
	}
	if err := s.host.Created(ctx, vm, !noStart, func(phase string) { p.Phase(phase, 0) }); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if noStart {
		return nil
	}
	key, t := s.template(ctx, vm, cold)
	if t != nil {
		p.Phase("starting from a template", 0)
		if s.startFromTemplate(ctx, &vm, key, t) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	p.Phase("booting", 0)
	if _, err = s.startWith(ctx, vm.ID, bootPlan{template: key != ""}); err == nil && key != "" {
		// The first boot of a fresh VM: nothing of the user's ran yet.
		if v, gerr := s.store.GetVM(ctx, vm.ID); gerr == nil {
			p.Phase("leaving a template for instant vms", 0)
			s.leaveTemplate(ctx, v, key)
		}
	}
	if err != nil && ctx.Err() == nil {
		// A `vm stop` during the boot cancels it and leaves the VM
		// stopped: the create itself succeeded, so nothing is rolled back.
		if v, gerr := s.store.GetVM(ctx, vm.ID); gerr == nil && v.State == model.StateStopped {
			s.log.Info("vm stopped while its create booted it", "vm", vm.Name)
			return nil
		}
	}
	return err
}
