// Package vm is the VM service: it validates and reserves new VMs, drives
// their lifecycle through a vmm.Driver, keeps their transient handles (in
// memory and in each VM's handles file), and reconciles with reality when
// the daemon starts.
//
// Locks (see ARCHITECTURE.md for the order): a per-VM lock guards state
// transitions of one VM and is held only to read, check and record a state,
// never across a boot or a stop; reserveMu guards the name check, IP
// allocation and insert of a new VM, for milliseconds. The handle cache and
// the in-flight table have leaf mutexes of their own.
package vm

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/banger-dev/banger/internal/image"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/op"
	"github.com/banger-dev/banger/internal/paths"
	"github.com/banger-dev/banger/internal/vmm"
)

// Store is what the service needs from the database.
type Store interface {
	InsertVM(ctx context.Context, vm model.VM) error
	GetVM(ctx context.Context, ref string) (model.VM, error)
	ListVMs(ctx context.Context) ([]model.VM, error)
	SetVMState(ctx context.Context, id string, state model.State, lastErr string) error
	SetVMDriver(ctx context.Context, id, driver string) error
	SetVMResources(ctx context.Context, id string, vcpus int, memoryMiB, diskMiB int64) error
	SetVMImageID(ctx context.Context, id, imageID string) error
	SetVMAutoRemove(ctx context.Context, id string, on bool) error
	InsertSnapshot(ctx context.Context, sn model.Snapshot) error
	GetSnapshot(ctx context.Context, vmID, name string) (model.Snapshot, error)
	ListSnapshots(ctx context.Context, vmID string) ([]model.Snapshot, error)
	DeleteSnapshot(ctx context.Context, vmID, name string) error
	DeleteVM(ctx context.Context, id string) error
	LeasedIPs(ctx context.Context) ([]string, error)
	GetImage(ctx context.Context, name string) (model.Image, error)
	GetImageContent(ctx context.Context, id string) (model.Image, error)
	PutWorkspace(ctx context.Context, w model.Workspace) error
	GetWorkspace(ctx context.Context, vmID, path string) (model.Workspace, error)
	ListWorkspaces(ctx context.Context, vmID string) ([]model.Workspace, error)
}

// Host does the host-side work around a VM's lifecycle: the boot steps
// that are not the VMM's (image, initramfs, disks, network) and waiting
// for the guest to be ready. The service decides when; Host knows how.
type Host interface {
	// Created makes what a new VM keeps for its life (disks, host key).
	// When the VM boots right away it also fetches the image first, so the
	// fetch shows as a phase of the create. progress names each phase.
	Created(ctx context.Context, vm model.VM, fetchImage bool, progress func(phase string)) error
	// Prepare readies everything a boot needs and returns the VMM spec.
	// On error it has released what it took.
	Prepare(ctx context.Context, vm model.VM) (vmm.Spec, error)
	// Ready returns once the booted guest answers (agent and SSH).
	Ready(ctx context.Context, vm model.VM, h vmm.Handles) error
	// Release gives back what Prepare took (the tap), after the VMM exited.
	Release(ctx context.Context, vm model.VM, h vmm.Handles) error
	// Maintenance readies a maintenance boot of a stopped VM: its root
	// read-only, nothing of the image run, reached by the tunnel only.
	Maintenance(ctx context.Context, vm model.VM) (vmm.Spec, error)
	// MaintenanceReady returns once a maintenance boot's agent answers.
	MaintenanceReady(ctx context.Context, vm model.VM, h vmm.Handles) error
	// Resumed readies a guest that a restore, a fork or a template
	// started from saved memory: its identity, clock, SSH listening, ports.
	Resumed(ctx context.Context, vm model.VM, h vmm.Handles) error
	// Records publishes the name → IP table (for DNS) after it changed.
	Records(ctx context.Context, vms []model.VM)
	// Adopted resumes what a running VM needs from the host (its
	// published ports) when a new daemon takes it over.
	Adopted(ctx context.Context, vm model.VM, h vmm.Handles)
	// TemplateKey names the template a VM like vm can start from (see
	// template.go): everything a restored guest must share with the saved.
	TemplateKey(ctx context.Context, vm model.VM) (string, error)
	// TemplateBuild is what every key of this daemon's shares (its build):
	// templates of another are swept.
	TemplateBuild() string
	// SyncClock brings a running guest's clock to the host's.
	SyncClock(ctx context.Context, vm model.VM, h vmm.Handles) error
}

// Config is the service's configuration.
type Config struct {
	Layout           paths.Layout
	Subnet           netip.Prefix
	DefaultImage     string
	DefaultVCPUs     int
	DefaultMemoryMiB int64
	DefaultDiskMiB   int64
	// HostMemoryMiB caps a VM's memory; 0 skips the check.
	HostMemoryMiB int64
	StopTimeout   time.Duration
	// ClockEvery is how often running guests' clocks are set from the
	// host's (0: DefaultClockEvery).
	ClockEvery time.Duration
	// Drivers are the other drivers this daemon knows, for VMs created
	// with one that is not the default now: a VM keeps its driver.
	Drivers []vmm.Driver
}

// Service owns VMs.
type Service struct {
	cfg     Config
	store   Store
	driver  vmm.Driver
	ops     *op.Registry
	catalog *image.Catalog
	host    Host
	log     *slog.Logger

	reserveMu sync.Mutex
	locks     lockSet
	handles   handleCache

	// inflightMu guards boots, creating and maintaining: leaf state, no
	// I/O under it.
	inflightMu  sync.Mutex
	boots       map[string]*work     // VM ID → boot in progress
	creating    map[string]*creation // VM ID → create operation in progress
	maintaining map[string]*upkeep   // VM ID → maintenance boot in progress

	// defaultsMu guards defaults, which a config reload replaces.
	defaultsMu sync.RWMutex
	defaults   Defaults

	// rebootMu guards reboots (VM ID → recent guest reboots): leaf state.
	rebootMu sync.Mutex
	reboots  map[string][]time.Time
}

// work is a boot in progress that a stop or delete may cancel.
type work struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// upkeep is a maintenance boot in progress (see Maintain): why, and how a
// forced delete stops it.
type upkeep struct {
	why string
	work
}

// creation marks a VM whose create operation has not finished.
type creation struct{ opID string }

// New makes a service.
func New(cfg Config, store Store, driver vmm.Driver, host Host, ops *op.Registry, catalog *image.Catalog, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.ClockEvery <= 0 {
		cfg.ClockEvery = DefaultClockEvery
	}
	return &Service{
		defaults: Defaults{Image: cfg.DefaultImage, VCPUs: cfg.DefaultVCPUs, MemoryMiB: cfg.DefaultMemoryMiB,
			DiskMiB: cfg.DefaultDiskMiB, StopTimeout: cfg.StopTimeout},
		cfg: cfg, store: store, driver: driver, host: host, ops: ops, catalog: catalog, log: log,
		handles:  handleCache{layout: cfg.Layout, m: map[string]vmm.Handles{}},
		boots:    map[string]*work{},
		creating: map[string]*creation{},
	}
}

// Defaults are the settings a running daemon can change on reload: what a
// new VM gets when its create leaves a field out, and the stop timeout.
type Defaults struct {
	Image       string
	VCPUs       int
	MemoryMiB   int64
	DiskMiB     int64
	StopTimeout time.Duration
}

// SetDefaults replaces the defaults (a config reload).
func (s *Service) SetDefaults(d Defaults) {
	s.defaultsMu.Lock()
	defer s.defaultsMu.Unlock()
	s.defaults = d
}

func (s *Service) currentDefaults() Defaults {
	s.defaultsMu.RLock()
	defer s.defaultsMu.RUnlock()
	return s.defaults
}

func (s *Service) stopTimeout() time.Duration { return s.currentDefaults().StopTimeout }

// driverNamed is the driver a VM or its handles name. A VM created while
// no driver was usable ("none") gets the default.
func (s *Service) driverNamed(name string) vmm.Driver {
	if name == s.driver.Name() || name == "" || name == "none" {
		return s.driver
	}
	for _, d := range s.cfg.Drivers {
		if d.Name() == name {
			return d
		}
	}
	return vmm.None{Reason: "this bangerd has no " + name + " driver"}
}

// Get finds a VM by name or ID.
func (s *Service) Get(ctx context.Context, ref string) (model.VM, error) {
	return s.store.GetVM(ctx, ref)
}

// List returns every VM.
func (s *Service) List(ctx context.Context) ([]model.VM, error) {
	return s.store.ListVMs(ctx)
}

// Dir is the VM's directory.
func (s *Service) Dir(vm model.VM) string { return s.cfg.Layout.VMDir(vm.ID) }

// setState records a state change after checking it against the model's
// transition table. Callers hold the VM's lock.
func (s *Service) setState(ctx context.Context, vm *model.VM, to model.State, lastErr string) error {
	if vm.State != to {
		if err := model.Transition(vm.State, to); err != nil {
			return fmt.Errorf("vm %s: %w", vm.Name, err)
		}
	}
	if err := s.store.SetVMState(ctx, vm.ID, to, lastErr); err != nil {
		return err
	}
	vm.State, vm.LastError = to, lastErr
	return nil
}

// publishRecords hands the current name → IP table to the host.
func (s *Service) publishRecords(ctx context.Context) {
	vms, err := s.store.ListVMs(ctx)
	if err != nil {
		s.log.Warn("listing vms for dns", "err", err)
		return
	}
	s.host.Records(ctx, vms)
}

// maintenance says why VM id is in a maintenance boot, if it is.
func (s *Service) maintenance(id string) (string, bool) {
	s.inflightMu.Lock()
	defer s.inflightMu.Unlock()
	m, ok := s.maintaining[id]
	if !ok {
		return "", false
	}
	return m.why, true
}

func (s *Service) creatingOp(id string) (string, bool) {
	s.inflightMu.Lock()
	defer s.inflightMu.Unlock()
	c, ok := s.creating[id]
	if !ok {
		return "", false
	}
	return c.opID, true
}
