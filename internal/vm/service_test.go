package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/host/disk"
	"github.com/banger-dev/banger/internal/image"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/op"
	"github.com/banger-dev/banger/internal/paths"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/vmm/fakevmm"
)

type harness struct {
	svc    *Service
	store  *store.Store
	driver *fakevmm.Driver
	ops    *op.Registry
	layout paths.Layout
}

func newHarness(t *testing.T, driver vmm.Driver) *harness {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), dir+"/banger.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := &harness{store: st, layout: paths.Layout{StateDir: dir}}
	if driver == nil {
		h.driver = fakevmm.New()
		driver = h.driver
	}
	h.svc = h.newService(t, driver)
	return h
}

// newService makes a fresh service over the same store and state dir, as a
// restarted daemon would.
func (h *harness) newService(t *testing.T, driver vmm.Driver, others ...vmm.Driver) *Service {
	ctx, cancel := context.WithCancel(context.Background())
	ops := op.NewRegistry(ctx, h.store, nil)
	t.Cleanup(func() { cancel(); ops.Drain() })
	h.ops = ops
	cfg := Config{
		Layout: h.layout, Subnet: netip.MustParsePrefix("172.16.0.0/24"),
		DefaultImage: "debian-12", DefaultVCPUs: 2, DefaultMemoryMiB: 512, DefaultDiskMiB: 2048,
		HostMemoryMiB: 8192, StopTimeout: time.Second, Drivers: others,
	}
	return New(cfg, h.store, driver, &fakeHost{layout: h.layout}, ops, image.Builtin(), nil)
}

// fakeHost does no host work; it tracks taps so tests can check that every
// boot's tap is given back.
type fakeHost struct {
	layout paths.Layout
	mu     sync.Mutex
	taps   map[string]bool
	next   int
	clocks map[string]int // VM name → clock exchanges
	// readyErrs are what the next Ready calls return, in order.
	readyErrs []error
	// resumeErrs are what Resumed returns for a VM, by name.
	resumeErrs map[string]error
	resumed    []string
	build      string // TemplateBuild ("b1" when empty)
}

// Created makes stand-ins for the VM's disks, as the real one does.
func (f *fakeHost) Created(_ context.Context, vm model.VM, _ bool, _ func(string)) error {
	for _, d := range []string{upperDisk, workDisk} {
		if p := f.layout.VMFile(vm.ID, d); !disk.Exists(p) {
			if err := os.WriteFile(p, []byte("fresh "+d), 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *fakeHost) Prepare(ctx context.Context, vm model.VM) (vmm.Spec, error) {
	if err := f.Created(ctx, vm, false, nil); err != nil {
		return vmm.Spec{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.taps == nil {
		f.taps = map[string]bool{}
	}
	f.next++
	tap := fmt.Sprintf("tap%d", f.next)
	f.taps[tap] = true
	return vmm.Spec{VM: vm, Tap: tap}, nil
}

func (f *fakeHost) Maintenance(_ context.Context, vm model.VM) (vmm.Spec, error) {
	return vmm.Spec{VM: vm}, nil
}

func (f *fakeHost) MaintenanceReady(context.Context, model.VM, vmm.Handles) error { return nil }

func (f *fakeHost) Resumed(_ context.Context, vm model.VM, _ vmm.Handles) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resumed = append(f.resumed, vm.Name)
	return f.resumeErrs[vm.Name]
}

func (f *fakeHost) Ready(context.Context, model.VM, vmm.Handles) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.readyErrs) == 0 {
		return nil
	}
	err := f.readyErrs[0]
	f.readyErrs = f.readyErrs[1:]
	return err
}

func (f *fakeHost) Release(_ context.Context, _ model.VM, h vmm.Handles) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.taps, h.Tap)
	return nil
}

func (f *fakeHost) Records(context.Context, []model.VM) {}

func (f *fakeHost) TemplateKey(_ context.Context, vm model.VM) (string, error) {
	return fmt.Sprintf("k-%s-%s-%d-%d-%d", f.TemplateBuild(), vm.Image, vm.VCPUs, vm.MemoryMiB, vm.DiskMiB), nil
}

func (f *fakeHost) TemplateBuild() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.build == "" {
		return "b1"
	}
	return f.build
}

func (f *fakeHost) Adopted(context.Context, model.VM, vmm.Handles) {}

func (f *fakeHost) SyncClock(_ context.Context, vm model.VM, _ vmm.Handles) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.clocks == nil {
		f.clocks = map[string]int{}
	}
	f.clocks[vm.Name]++
	return nil
}

func (f *fakeHost) clockSyncs(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clocks[name]
}

func (f *fakeHost) heldTaps() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.taps)
}

func (h *harness) wait(t *testing.T, opID string) model.Operation {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	o, err := h.ops.Wait(ctx, opID)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func (h *harness) create(t *testing.T, name string, noStart bool) model.VM {
	t.Helper()
	return h.createWith(t, CreateRequest{Name: name, NoStart: noStart})
}

// createWith creates a VM as req asks and waits for its create.
func (h *harness) createWith(t *testing.T, req CreateRequest) model.VM {
	t.Helper()
	vm, o, err := h.svc.Create(context.Background(), req)
	if err != nil {
		t.Fatalf("create %s: %v", req.Name, err)
	}
	if o := h.wait(t, o.ID); o.State != model.OpSucceeded {
		t.Fatalf("create %s: op %s: %s", req.Name, o.State, o.Error)
	}
	return vm
}

func TestParallelCreatesOfDistinctNamesOverlap(t *testing.T) {
	const n = 20
	h := newHarness(t, nil)
	var arrived atomic.Int32
	release := make(chan struct{})
	var once sync.Once
	// Each boot blocks until all n are inside the driver at once. If creates
	// serialised anywhere, the count would never reach n and the boots
	// would time out.
	h.driver.BeforeStart = func(ctx context.Context, _ vmm.Spec) error {
		if arrived.Add(1) == n {
			once.Do(func() { close(release) })
		}
		select {
		case <-release:
			return nil
		case <-time.After(15 * time.Second):
			return fmt.Errorf("only %d of %d boots overlapped", arrived.Load(), n)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var wg sync.WaitGroup
	opIDs := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, o, err := h.svc.Create(context.Background(), CreateRequest{Name: fmt.Sprintf("vm-%d", i)})
			opIDs[i], errs[i] = o.ID, err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	for _, id := range opIDs {
		if o := h.wait(t, id); o.State != model.OpSucceeded {
			t.Fatalf("op %s: %s %s", id, o.State, o.Error)
		}
	}
	vms, _ := h.svc.List(context.Background())
	if len(vms) != n {
		t.Fatalf("want %d vms, got %d", n, len(vms))
	}
	ips := map[string]bool{}
	for _, vm := range vms {
		if vm.State != model.StateRunning {
			t.Errorf("%s is %s", vm.Name, vm.State)
		}
		if ips[vm.IP] {
			t.Errorf("ip %s handed out twice", vm.IP)
		}
		ips[vm.IP] = true
		if vm.IP == "172.16.0.1" || vm.IP == "172.16.0.0" {
			t.Errorf("reserved address %s handed out", vm.IP)
		}
	}
}

func TestParallelCreatesOfOneNameHaveOneWinner(t *testing.T) {
	const n = 20
	h := newHarness(t, nil)
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, _, errs[i] = h.svc.Create(context.Background(), CreateRequest{Name: "same", NoStart: true})
		}()
	}
	close(start)
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, model.ErrConflict) && strings.Contains(err.Error(), `"same" is already in use`):
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d creates of one name succeeded, want exactly 1", wins)
	}
	vms, _ := h.svc.List(context.Background())
	if len(vms) != 1 {
		t.Fatalf("want 1 vm, got %d", len(vms))
	}
}

func TestBadInputCreatesNothing(t *testing.T) {
	h := newHarness(t, nil)
	zero, tooMany := 0, 33
	cases := []struct {
		name string
		req  CreateRequest
		kind error
		msg  string
	}{
		{"bad name", CreateRequest{Name: "Bad_Name"}, model.ErrInvalid, "name"},
		{"zero vcpus", CreateRequest{Name: "a", VCPUs: &zero}, model.ErrInvalid, "vcpus: 0 is out of range"},
		{"too many vcpus", CreateRequest{Name: "a", VCPUs: &tooMany}, model.ErrInvalid, "vcpus"},
		{"unparsable memory", CreateRequest{Name: "a", Memory: "lots"}, model.ErrInvalid, "memory"},
		{"memory over host", CreateRequest{Name: "a", Memory: "9G"}, model.ErrInvalid, "more than this host"},
		{"memory too small", CreateRequest{Name: "a", Memory: "64M"}, model.ErrInvalid, "below the minimum"},
		{"disk too small", CreateRequest{Name: "a", Disk: "512M"}, model.ErrInvalid, "disk"},
		{"unknown image", CreateRequest{Name: "a", Image: "nope-9"}, model.ErrNotFound, "neither registered nor in the catalog"},
		{"image path injection", CreateRequest{Name: "a", Image: "../../etc"}, model.ErrInvalid, "image"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := h.svc.Create(context.Background(), c.req)
			if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, want %v containing %q", err, c.kind, c.msg)
			}
		})
	}
	vms, _ := h.svc.List(context.Background())
	entries, _ := os.ReadDir(h.layout.VMsDir())
	if len(vms) != 0 || len(entries) != 0 {
		t.Fatalf("bad input left %d vms and %d dirs", len(vms), len(entries))
	}
}

func TestNoDriverIsAClearError(t *testing.T) {
	h := newHarness(t, vmm.None{Reason: "qemu-system-x86_64 not found; install it with: apt-get install qemu-system-x86"})
	_, _, err := h.svc.Create(context.Background(), CreateRequest{Name: "a"})
	if !errors.Is(err, model.ErrUnavailable) || !strings.Contains(err.Error(), "no VM driver available") || !strings.Contains(err.Error(), "apt-get install") {
		t.Fatalf("got %v", err)
	}
	if vms, _ := h.svc.List(context.Background()); len(vms) != 0 {
		t.Fatal("failed create left a vm")
	}
	vm := h.create(t, "a", true)
	if vm.Driver != "none" || vm.State != model.StateCreated {
		t.Fatalf("no-start vm: %+v", vm)
	}
	if _, err := h.svc.Start(context.Background(), "a"); !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("start without driver: %v", err)
	}
	if got, _ := h.svc.Get(context.Background(), "a"); got.State != model.StateCreated {
		t.Fatalf("refused start changed state to %s", got.State)
	}
}

func TestCancelCreateRollsBack(t *testing.T) {
	h := newHarness(t, nil)
	entered := make(chan struct{})
	h.driver.BeforeStart = func(ctx context.Context, _ vmm.Spec) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	}
	vm, o, err := h.svc.Create(context.Background(), CreateRequest{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	// While the boot is in flight the VM lock is free: nothing long runs under it.
	if unlock, ok := h.svc.locks.TryLock(vm.ID); !ok {
		t.Fatal("vm lock held across the boot")
	} else {
		unlock()
	}
	final, err := h.ops.Cancel(context.Background(), o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if final.State != model.OpCancelled {
		t.Fatalf("op %s after cancel", final.State)
	}
	assertGone(t, h, vm)
}

func TestBootFailureRollsBack(t *testing.T) {
	h := newHarness(t, nil)
	h.driver.BeforeStart = func(context.Context, vmm.Spec) error { return errors.New("kernel panic") }
	vm, o, err := h.svc.Create(context.Background(), CreateRequest{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	final := h.wait(t, o.ID)
	if final.State != model.OpFailed || !strings.Contains(final.Error, "kernel panic") {
		t.Fatalf("op: %+v", final)
	}
	assertGone(t, h, vm)
	// The name and IP are free again.
	h.driver.BeforeStart = nil
	vm2 := h.create(t, "a", false)
	if vm2.IP != vm.IP {
		t.Fatalf("ip not reused: %s then %s", vm.IP, vm2.IP)
	}
}

func assertGone(t *testing.T, h *harness, vm model.VM) {
	t.Helper()
	if _, err := h.svc.Get(context.Background(), vm.Name); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("vm still recorded: %v", err)
	}
	if ips, _ := h.store.LeasedIPs(context.Background()); len(ips) != 0 {
		t.Fatalf("leases remain: %v", ips)
	}
	if _, err := os.Stat(h.layout.VMDir(vm.ID)); !os.IsNotExist(err) {
		t.Fatalf("vm dir remains: %v", err)
	}
	if s := h.driver.String(); s != "" {
		t.Fatalf("driver still runs: %s", s)
	}
	if n := h.svc.host.(*fakeHost).heldTaps(); n != 0 {
		t.Fatalf("%d taps not released", n)
	}
}

func TestLifecycle(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	vm := h.create(t, "a", false)
	if got := h.driver.String(); got != "running a" {
		t.Fatalf("driver state %q", got)
	}
	if _, err := os.Stat(h.layout.HandlesFile(vm.ID)); err != nil {
		t.Fatalf("handles file missing: %v", err)
	}
	if err := h.svc.Delete(ctx, "a", false); !errors.Is(err, model.ErrState) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("delete of running vm: %v", err)
	}
	if got, _ := h.svc.Start(ctx, "a"); got.State != model.StateRunning {
		t.Fatal("start of running vm is not a no-op")
	}
	stopped, err := h.svc.Stop(ctx, "a")
	if err != nil || stopped.State != model.StateStopped {
		t.Fatalf("stop: %+v %v", stopped, err)
	}
	if _, err := os.Stat(h.layout.HandlesFile(vm.ID)); !os.IsNotExist(err) {
		t.Fatal("handles file survived stop")
	}
	if _, err := h.svc.Stop(ctx, "a"); err != nil {
		t.Fatalf("stop of stopped vm: %v", err)
	}
	if got, err := h.svc.Restart(ctx, vm.ID); err != nil || got.State != model.StateRunning {
		t.Fatalf("restart: %+v %v", got, err)
	}
	if h.driver.Starts() != 2 {
		t.Fatalf("starts = %d", h.driver.Starts())
	}
	if err := h.svc.Delete(ctx, "a", true); err != nil {
		t.Fatal(err)
	}
	assertGone(t, h, vm)
	if err := h.svc.Delete(ctx, "a", false); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("delete unknown: %v", err)
	}
}

func TestStopCancelsBoot(t *testing.T) {
	h := newHarness(t, nil)
	h.create(t, "a", true)
	entered := make(chan struct{})
	h.driver.BeforeStart = func(ctx context.Context, _ vmm.Spec) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	}
	errc := make(chan error, 1)
	go func() { _, err := h.svc.Start(context.Background(), "a"); errc <- err }()
	<-entered
	got, err := h.svc.Stop(context.Background(), "a")
	if err != nil || got.State != model.StateStopped {
		t.Fatalf("stop during boot: %+v %v", got, err)
	}
	if err := <-errc; err == nil {
		t.Fatal("cancelled start reported success")
	}
	if s := h.driver.String(); s != "" {
		t.Fatalf("driver runs %q", s)
	}
}

func TestDeleteForceCancelsCreate(t *testing.T) {
	h := newHarness(t, nil)
	entered := make(chan struct{})
	h.driver.BeforeStart = func(ctx context.Context, _ vmm.Spec) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	}
	vm, _, err := h.svc.Create(context.Background(), CreateRequest{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	if err := h.svc.Delete(context.Background(), "a", false); !errors.Is(err, model.ErrState) || !strings.Contains(err.Error(), "op cancel") {
		t.Fatalf("delete during create: %v", err)
	}
	if err := h.svc.Delete(context.Background(), "a", true); err != nil && !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("force delete during create: %v", err)
	}
	assertGone(t, h, vm)
}

func TestReconcileAfterRestart(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	a := h.create(t, "a", false)
	h.create(t, "b", false)

	// A new daemon process over the same state: both VMs still run.
	svc2 := h.newService(t, h.driver)
	if err := svc2.Reconcile(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if vm, _ := svc2.Get(ctx, name); vm.State != model.StateRunning {
			t.Fatalf("%s is %s after reconcile", name, vm.State)
		}
	}
	if _, ok := svc2.handles.get(a.ID); !ok {
		t.Fatal("handles not rediscovered from the handles file")
	}

	// a's process dies while no daemon runs; the next daemon marks it stopped.
	h.driver.Crash("a")
	svc3 := h.newService(t, h.driver)
	if err := svc3.Reconcile(ctx, nil); err != nil {
		t.Fatal(err)
	}
	got, _ := svc3.Get(ctx, "a")
	if got.State != model.StateStopped || !strings.Contains(got.LastError, "exited") {
		t.Fatalf("dead vm after reconcile: %+v", got)
	}
	if _, err := os.Stat(h.layout.HandlesFile(a.ID)); !os.IsNotExist(err) {
		t.Fatal("dead vm's handles file survived reconcile")
	}
	if b, _ := svc3.Get(ctx, "b"); b.State != model.StateRunning {
		t.Fatalf("b is %s", b.State)
	}
	// It can be started again.
	if got, err := svc3.Start(ctx, "a"); err != nil || got.State != model.StateRunning {
		t.Fatalf("restart after crash: %+v %v", got, err)
	}
}

func TestNextFreeIP(t *testing.T) {
	p := netip.MustParsePrefix("10.9.0.0/29") // hosts .1–.6; .1 is the bridge
	var used []string
	for want := 2; want <= 6; want++ {
		a, err := nextFreeIP(p, used)
		if err != nil || a.String() != fmt.Sprintf("10.9.0.%d", want) {
			t.Fatalf("got %v %v, want .%d", a, err, want)
		}
		used = append(used, a.String())
	}
	if _, err := nextFreeIP(p, used); !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("full subnet: %v", err)
	}
	if got := macFor(netip.MustParseAddr("172.16.0.5")); got != "02:fc:ac:10:00:05" {
		t.Fatalf("mac %s", got)
	}
}

// A VM keeps the driver it was created with, even when the daemon's
// default changes; a VM created with no usable driver adopts the default.
func TestVMKeepsItsDriver(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.create(t, "old", true)

	other := fakevmm.NewNamed("other")
	svc := h.newService(t, other, h.driver)
	if got, err := svc.Start(ctx, "old"); err != nil || got.Driver != "fake" {
		t.Fatalf("start: %+v %v", got, err)
	}
	if h.driver.String() != "running old" || other.String() != "" {
		t.Fatalf("old booted on the wrong driver: fake=%q other=%q", h.driver, other)
	}
	if _, err := svc.Stop(ctx, "old"); err != nil {
		t.Fatal(err)
	}

	// Without its driver, the VM says which one it needs.
	lonely := h.newService(t, other)
	if _, err := lonely.Start(ctx, "old"); err == nil || !strings.Contains(err.Error(), "created with the fake driver") {
		t.Fatalf("start without its driver: %v", err)
	}

	none := newHarness(t, vmm.None{Reason: "nothing here"})
	none.create(t, "early", true)
	adopt := none.newService(t, other)
	got, err := adopt.Start(ctx, "early")
	if err != nil || got.Driver != "other" {
		t.Fatalf("adopting a driver: %+v %v", got, err)
	}
}

// A VM whose process exits while the daemon runs is noticed and torn down.
func TestWatchReapsExitedVM(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	a := h.create(t, "a", false)
	h.create(t, "b", false)
	h.driver.Crash("a")
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go h.svc.Watch(wctx, 10*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := h.svc.Get(ctx, "a")
		if got.State == model.StateStopped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("crashed vm still %s", got.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := h.svc.handles.get(a.ID); ok {
		t.Fatal("handles kept for a dead vm")
	}
	if n := h.svc.host.(*fakeHost).heldTaps(); n != 1 {
		t.Fatalf("%d taps held, want only b's", n)
	}
	if b, _ := h.svc.Get(ctx, "b"); b.State != model.StateRunning {
		t.Fatalf("b is %s", b.State)
	}
}

// A guest that powers itself off is stopped with no error; one that
// reboots is booted again, up to a limit.
func TestWatchPoweroffAndReboot(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.create(t, "off", false)
	h.create(t, "re", false)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { h.svc.Watch(wctx, 5*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()
	waitState := func(name, state string, cond func(model.VM) bool) model.VM {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			v, err := h.svc.Get(ctx, name)
			if err == nil && string(v.State) == state && (cond == nil || cond(v)) {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %+v, %v; want %s", name, v, err, state)
			}
		}
	}
	h.driver.Exit("off", vmm.ExitPoweroff)
	if v := waitState("off", "stopped", nil); v.LastError != "" {
		t.Errorf("a guest poweroff left the error %q", v.LastError)
	}
	starts := h.driver.Starts()
	for i := range maxReboots {
		h.driver.Exit("re", vmm.ExitReboot)
		waitState("re", "running", func(model.VM) bool { return h.driver.Starts() == starts+i+1 })
	}
	h.driver.Exit("re", vmm.ExitReboot)
	if v := waitState("re", "stopped", nil); !strings.Contains(v.LastError, "rebooted") {
		t.Errorf("a guest rebooting in a loop: last error %q", v.LastError)
	}
}

// A guest that hangs while booting is booted once more in a fresh VMM; a
// second hang fails the boot, leaving no VMM or tap behind.
func TestBootRetriesAHungGuestOnce(t *testing.T) {
	h := newHarness(t, nil)
	fh := h.svc.host.(*fakeHost)
	hung := fmt.Errorf("vm x: waiting for ssh: %w", vmm.ErrGuestHung)
	fh.mu.Lock()
	fh.readyErrs = []error{hung}
	fh.mu.Unlock()
	v := h.create(t, "once", false)
	if got, _ := h.svc.Get(context.Background(), v.Name); got.State != model.StateRunning {
		t.Fatalf("after one hang the vm is %s", got.State)
	}
	if n := h.driver.Starts(); n != 2 {
		t.Fatalf("%d VMM starts, want 2", n)
	}
	fh.mu.Lock()
	fh.readyErrs = []error{hung, hung}
	fh.mu.Unlock()
	_, o, err := h.svc.Create(context.Background(), CreateRequest{Name: "twice"})
	if err != nil {
		t.Fatal(err)
	}
	if o := h.wait(t, o.ID); o.State != model.OpFailed || !strings.Contains(o.Error, "hung") {
		t.Fatalf("two hangs: op %s %q", o.State, o.Error)
	}
	if n := fh.heldTaps(); n != 1 {
		t.Fatalf("%d taps held, want only the running vm's", n)
	}
}

// Watch keeps running guests' clocks on the host's, and only theirs.
func TestWatchSyncsClocksOfRunningVMs(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.create(t, "up", false)
	h.create(t, "down", false)
	if _, err := h.svc.Stop(ctx, "down"); err != nil {
		t.Fatal(err)
	}
	h.svc.cfg.ClockEvery = 20 * time.Millisecond
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { h.svc.Watch(wctx, 5*time.Millisecond); close(done) }()
	fh := h.svc.host.(*fakeHost)
	for deadline := time.Now().Add(5 * time.Second); fh.clockSyncs("up") < 3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d clock exchanges with the running vm in 5 s, want 3 or more", fh.clockSyncs("up"))
		}
	}
	cancel()
	<-done
	if n := fh.clockSyncs("down"); n != 0 {
		t.Fatalf("%d clock exchanges with a stopped vm", n)
	}
}

// A create the previous daemon did not finish is rolled back at start-up,
// and files no record owns (an interrupted delete, a half-written disk)
// are removed.
func TestReconcileRollsBackInterruptedCreatesAndSweeps(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	keep := h.create(t, "keep", true)
	half := h.create(t, "half", true)
	stray := filepath.Join(h.layout.VMsDir(), "0123456789abcdef")
	tmp := filepath.Join(h.layout.VMDir(keep.ID), ".work.ext4.tmp-42")
	for _, p := range []string{filepath.Join(stray, "work.ext4"), tmp} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	svc2 := h.newService(t, h.driver)
	if err := svc2.Reconcile(ctx, []string{"half", "no-such-vm"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc2.Get(ctx, "half"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("the interrupted create is still recorded: %v", err)
	}
	if _, err := os.Stat(h.layout.VMDir(half.ID)); !os.IsNotExist(err) {
		t.Fatalf("the interrupted create's directory remains: %v", err)
	}
	if ips, _ := h.store.LeasedIPs(ctx); len(ips) != 1 || ips[0] != keep.IP {
		t.Fatalf("leases after the rollback: %v", ips)
	}
	if _, err := svc2.Get(ctx, "keep"); err != nil {
		t.Fatalf("a finished create was rolled back: %v", err)
	}
	for _, p := range []string{stray, tmp} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s survived the start-up sweep", p)
		}
	}
	if o := svc2.Orphans(ctx); len(o) != 0 {
		t.Fatalf("orphans after the sweep: %v", o)
	}
}

// A stop during a create's boot cancels the boot and leaves the VM
// stopped, not deleted.
func TestStopDuringCreateLeavesVMStopped(t *testing.T) {
	h := newHarness(t, nil)
	entered := make(chan struct{})
	h.driver.BeforeStart = func(ctx context.Context, _ vmm.Spec) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	}
	_, o, err := h.svc.Create(context.Background(), CreateRequest{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	vm, err := h.svc.Stop(context.Background(), "a")
	if err != nil || vm.State != model.StateStopped {
		t.Fatalf("stop during create: %+v, %v", vm, err)
	}
	if final := h.wait(t, o.ID); final.State != model.OpSucceeded {
		t.Fatalf("create op after a stop: %+v", final)
	}
	if got, err := h.svc.Get(context.Background(), "a"); err != nil || got.State != model.StateStopped {
		t.Fatalf("after the create: %+v, %v", got, err)
	}
}

func TestSetResources(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	vm := h.create(t, "a", false)
	one := 1
	if _, err := h.svc.Set(ctx, "a", SetRequest{VCPUs: &one}); !errors.Is(err, model.ErrState) || !strings.Contains(err.Error(), "vm stop a") {
		t.Fatalf("set on a running vm: %v", err)
	}
	if _, err := h.svc.Stop(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.layout.VMFile(vm.ID, "work.ext4"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := h.svc.Set(ctx, "a", SetRequest{VCPUs: &one, Memory: "768M", Disk: "3G"})
	if err != nil || got.VCPUs != 1 || got.MemoryMiB != 768 || got.DiskMiB != 3072 {
		t.Fatalf("set: %+v, %v", got, err)
	}
	if fi, _ := os.Stat(h.layout.VMFile(vm.ID, "work.ext4")); fi.Size() != 3072<<20 {
		t.Fatalf("work disk is %d bytes", fi.Size())
	}
	if _, err := h.svc.Set(ctx, "a", SetRequest{Disk: "2G"}); !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), "only grows") {
		t.Fatalf("shrinking the disk: %v", err)
	}
	if stored, _ := h.svc.Get(ctx, "a"); stored.VCPUs != 1 || stored.MemoryMiB != 768 || stored.DiskMiB != 3072 {
		t.Fatalf("stored: %+v", stored)
	}
}

// A host port one VM publishes is refused to the next, before anything is
// reserved; bad --publish values are refused as invalid.
func TestPublishedPortsAreExclusive(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	vm, o, err := h.svc.Create(ctx, CreateRequest{Name: "web", NoStart: true, Publish: []string{"8080:80", "8443:443/tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	h.wait(t, o.ID)
	if got, _ := h.svc.Get(ctx, "web"); len(got.Publish) != 2 || got.Publish[1] != (model.PortMap{Host: 8443, Guest: 443, Proto: "tcp"}) {
		t.Fatalf("recorded %+v", got.Publish)
	}
	if _, _, err := h.svc.Create(ctx, CreateRequest{Name: "other", NoStart: true, Publish: []string{"9000:90", "8443:22"}}); !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), vm.Name) {
		t.Fatalf("second vm on port 8443: %v, want a conflict naming %s", err, vm.Name)
	}
	if _, _, err := h.svc.Create(ctx, CreateRequest{Name: "bad", NoStart: true, Publish: []string{"53:53/udp"}}); !errors.Is(err, model.ErrInvalid) {
		t.Fatalf("udp: %v, want invalid", err)
	}
	if vms, _ := h.svc.List(ctx); len(vms) != 1 {
		t.Fatalf("%d vms after refused creates, want 1", len(vms))
	}
}

// A maintenance boot holds a stopped VM: start, set and delete are refused
// meanwhile, the record stays stopped, the boot is gone afterwards, and a
// forced delete cancels it.
func TestMaintain(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	vm := h.create(t, "a", false)
	if err := h.svc.Maintain(ctx, "a", "being promoted to image x", func(context.Context, model.VM, vmm.Handles) error { return nil }); !errors.Is(err, model.ErrState) || !strings.Contains(err.Error(), "vm stop a") {
		t.Fatalf("maintenance of a running vm: %v", err)
	}
	if _, err := h.svc.Stop(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	inside, release := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- h.svc.Maintain(ctx, "a", "being promoted to image x", func(ctx context.Context, mv model.VM, _ vmm.Handles) error {
			if mv.ID != vm.ID {
				return errors.New("another vm")
			}
			close(inside)
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	<-inside
	if got := h.driver.String(); got != "running a" {
		t.Fatalf("during maintenance the driver runs %q", got)
	}
	if v, _ := h.svc.Get(ctx, "a"); v.State != model.StateStopped {
		t.Fatalf("during maintenance the record says %s", v.State)
	}
	if _, err := h.svc.Start(ctx, "a"); !errors.Is(err, model.ErrState) || !strings.Contains(err.Error(), "promoted to image x") {
		t.Fatalf("start during maintenance: %v", err)
	}
	two := 2
	if _, err := h.svc.Set(ctx, "a", SetRequest{VCPUs: &two}); !errors.Is(err, model.ErrState) {
		t.Fatalf("set during maintenance: %v", err)
	}
	if err := h.svc.Delete(ctx, "a", false); !errors.Is(err, model.ErrState) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("delete during maintenance: %v", err)
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got := h.driver.String(); got != "" {
		t.Fatalf("after maintenance the driver runs %q", got)
	}
	if got, err := h.svc.Start(ctx, "a"); err != nil || got.State != model.StateRunning {
		t.Fatalf("start after maintenance: %+v %v", got, err)
	}
	if _, err := h.svc.Stop(ctx, "a"); err != nil {
		t.Fatal(err)
	}

	// A forced delete cancels the maintenance.
	inside = make(chan struct{})
	go func() {
		errc <- h.svc.Maintain(ctx, "a", "being promoted to image y", func(ctx context.Context, _ model.VM, _ vmm.Handles) error {
			close(inside)
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	<-inside
	if err := h.svc.Delete(ctx, "a", true); err != nil {
		t.Fatalf("forced delete during maintenance: %v", err)
	}
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled maintenance: %v", err)
	}
	assertGone(t, h, vm)
}

// Snapshots need a running VM and a driver that takes them; a snapshot
// the VM has changed away from is refused.
func TestSnapshotRefusals(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.create(t, "a", false)
	if _, err := h.svc.Snapshot(ctx, "a", "one"); !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), "takes no snapshots") {
		t.Fatalf("a snapshot on a driver without them: %v", err)
	}
	if _, err := h.svc.Snapshot(ctx, "a", "bad name!"); !errors.Is(err, model.ErrInvalid) {
		t.Fatalf("a bad snapshot name: %v", err)
	}
	if _, err := h.svc.Stop(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Snapshot(ctx, "a", "one"); !errors.Is(err, model.ErrState) {
		t.Fatalf("a snapshot of a stopped vm: %v", err)
	}
	vm, _ := h.svc.Get(ctx, "a")
	sn := model.Snapshot{Driver: vm.Driver, VCPUs: vm.VCPUs, MemoryMiB: vm.MemoryMiB, DiskMiB: vm.DiskMiB, ImageID: vm.ImageID}
	if err := matches(vm, sn); err != nil {
		t.Fatalf("a matching snapshot: %v", err)
	}
	for _, change := range []func(*model.Snapshot){
		func(s *model.Snapshot) { s.VCPUs++ },
		func(s *model.Snapshot) { s.MemoryMiB *= 2 },
		func(s *model.Snapshot) { s.Driver = "firecracker" },
		func(s *model.Snapshot) { s.ImageID = "sha256:other" },
	} {
		other := sn
		change(&other)
		if err := matches(vm, other); !errors.Is(err, vmm.ErrSnapshotMismatch) {
			t.Errorf("a snapshot %+v of vm %+v: %v", other, vm, err)
		}
	}
}

// writeDisks puts stand-ins for a VM's writable disks in its directory
// (the fake host makes none).
func writeDisks(t *testing.T, h *harness, vm model.VM, content string) {
	t.Helper()
	for _, d := range []string{upperDisk, workDisk} {
		if err := os.WriteFile(h.layout.VMFile(vm.ID, d), []byte(content+" "+d), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// A snapshot pauses, saves, copies the disks and resumes; a restore puts
// the disks back and starts from the state; a save that fails leaves the
// VM running and nothing recorded.
func TestSnapshotAndRestore(t *testing.T) {
	d := fakevmm.NewSnapshotting()
	h := newHarness(t, d)
	ctx := context.Background()
	vm := h.create(t, "a", false)
	writeDisks(t, h, vm, "then")
	sn, err := h.svc.Snapshot(ctx, "a", "one")
	if err != nil {
		t.Fatal(err)
	}
	if sn.Version != fakevmm.SnapshotVersion || sn.SizeBytes == 0 || d.IsPaused("a") {
		t.Fatalf("snapshot %+v, paused %v", sn, d.IsPaused("a"))
	}
	dir := filepath.Join(h.layout.SnapshotsDir(vm.ID), "one")
	for _, f := range []string{snapshotState, upperDisk, workDisk} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("snapshot file %s: %v", f, err)
		}
	}
	writeDisks(t, h, vm, "now")
	starts := d.Starts()
	got, err := h.svc.Restore(ctx, "a", "one")
	if err != nil || got.State != model.StateRunning {
		t.Fatalf("restore: %+v %v", got, err)
	}
	if b, _ := os.ReadFile(h.layout.VMFile(vm.ID, upperDisk)); string(b) != "then "+upperDisk {
		t.Errorf("the restored root layer holds %q", b)
	}
	if d.Starts() != starts+1 || d.String() != "running a" {
		t.Errorf("after the restore: %d starts, %q", d.Starts(), d.String())
	}

	d.FailSave = errors.New("disk full")
	if _, err := h.svc.Snapshot(ctx, "a", "two"); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("a failing save: %v", err)
	}
	if d.IsPaused("a") {
		t.Error("a failed save left the vm paused")
	}
	if _, err := h.store.GetSnapshot(ctx, vm.ID, "two"); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("a failed save was recorded: %v", err)
	}
	if entries, _ := os.ReadDir(h.layout.SnapshotsDir(vm.ID)); len(entries) != 1 {
		t.Errorf("a failed save left files: %v", entries)
	}
}

// A daemon that died in the middle of a save leaves the VM paused and a
// temporary directory: the next one resumes the VM and removes it.
func TestReconcileAfterAnInterruptedSave(t *testing.T) {
	d := fakevmm.NewSnapshotting()
	h := newHarness(t, d)
	ctx := context.Background()
	vm := h.create(t, "a", false)
	hd, ok := h.svc.handles.get(vm.ID)
	if !ok {
		t.Fatal("no handles")
	}
	tmp := filepath.Join(h.layout.SnapshotsDir(vm.ID), ".tmp-one-0000")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Save(ctx, hd, filepath.Join(tmp, snapshotState)); err != nil {
		t.Fatal(err)
	}
	svc := h.newService(t, d)
	if err := svc.Reconcile(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if d.IsPaused("a") {
		t.Error("the vm an interrupted save paused is still paused")
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the interrupted save's files remain: %v", err)
	}
}

// A fork saves the running source once and starts each copy from that
// state with its own record, disks and workspace records; a copy that
// fails takes every copy with it; a stopped source is refused.
func TestFork(t *testing.T) {
	d := fakevmm.NewSnapshotting()
	h := newHarness(t, d)
	ctx := context.Background()
	src := h.create(t, "src", false)
	writeDisks(t, h, src, "then")
	if _, err := h.svc.RecordWorkspace(ctx, "src", model.Workspace{Path: "/work/repo", Repo: "/home/u/repo", Head: strings.Repeat("a", 40), IndexCommit: strings.Repeat("e", 40), IndexTree: strings.Repeat("f", 40),
		BaseCommit: strings.Repeat("b", 40), BaseTree: strings.Repeat("c", 40), ExportBranch: "banger/src", ExportCommit: strings.Repeat("d", 40)}); err != nil {
		t.Fatal(err)
	}
	forks, err := h.svc.Fork(ctx, "src", "try", 3)
	if err != nil {
		t.Fatal(err)
	}
	ips := map[string]bool{src.IP: true}
	for i, f := range forks {
		if want := fmt.Sprintf("try-%d", i+1); f.Name != want || f.State != model.StateRunning || f.AutoRemove || f.ImageID != src.ImageID {
			t.Errorf("fork %d: %+v", i, f)
		}
		if ips[f.IP] {
			t.Errorf("fork %s has a taken address %s", f.Name, f.IP)
		}
		ips[f.IP] = true
		if b, _ := os.ReadFile(h.layout.VMFile(f.ID, upperDisk)); string(b) != "then "+upperDisk {
			t.Errorf("fork %s's root layer holds %q", f.Name, b)
		}
		w, err := h.svc.Workspace(ctx, f.Name, "/work/repo")
		if err != nil || w.BaseCommit != strings.Repeat("b", 40) || w.ExportBranch != "" {
			t.Errorf("fork %s's workspace: %+v %v", f.Name, w, err)
		}
		if got, _ := h.store.GetVM(ctx, f.ID); got.AutoRemove {
			t.Errorf("fork %s is still marked auto-remove", f.Name)
		}
	}
	if d.IsPaused("src") {
		t.Error("the source is left paused")
	}
	if entries, _ := os.ReadDir(h.layout.SnapshotsDir(src.ID)); len(entries) != 0 {
		t.Errorf("the fork left saved state: %v", entries)
	}

	fh := h.svc.host.(*fakeHost)
	fh.mu.Lock()
	fh.resumeErrs = map[string]error{"bad-2": errors.New("the agent does not answer")}
	fh.mu.Unlock()
	if _, err := h.svc.Fork(ctx, "src", "bad", 2); err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("a failing fork: %v", err)
	}
	for _, n := range []string{"bad-1", "bad-2"} {
		if _, err := h.store.GetVM(ctx, n); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("a failed fork left vm %s: %v", n, err)
		}
	}
	if _, err := h.svc.Fork(ctx, "src", "try-1", 1); !errors.Is(err, model.ErrConflict) {
		t.Errorf("a fork onto a name in use: %v", err)
	}
	if _, err := h.svc.Fork(ctx, "src", "many", MaxForks+1); !errors.Is(err, model.ErrInvalid) {
		t.Errorf("too many forks: %v", err)
	}
	if _, err := h.svc.Stop(ctx, "src"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Fork(ctx, "src", "late", 1); !errors.Is(err, model.ErrState) || !strings.Contains(err.Error(), "vm start src") {
		t.Errorf("a fork of a stopped vm: %v", err)
	}
	if n := h.svc.host.(*fakeHost).heldTaps(); n != 3 {
		t.Errorf("%d taps held, want the 3 forks'", n)
	}
}

// The first boot of a VM leaves a template; a later create of a VM like
// it starts from that; --cold, another size, or a template that no
// longer restores boot cold, the last replacing the template; templates
// whose image content is gone are swept.
func TestInstantCreate(t *testing.T) {
	d := fakevmm.NewSnapshotting()
	h := newHarness(t, d)
	ctx := context.Background()
	h.create(t, "first", false)
	tmpls := h.svc.Templates()
	if len(tmpls) != 1 || tmpls[0].SizeBytes == 0 {
		t.Fatalf("templates after the first boot: %+v", tmpls)
	}
	fh := h.svc.host.(*fakeHost)
	resumed := func() []string {
		fh.mu.Lock()
		defer fh.mu.Unlock()
		return append([]string(nil), fh.resumed...)
	}
	h.create(t, "instant", false)
	if r := resumed(); len(r) != 1 || r[0] != "instant" {
		t.Fatalf("vms started from saved state: %v", r)
	}
	vm, _, err := h.svc.Create(ctx, CreateRequest{Name: "cold", Cold: true})
	if err != nil {
		t.Fatal(err)
	}
	waitRunning(t, h, vm.ID)
	if r := resumed(); len(r) != 1 {
		t.Errorf("--cold started from a template: %v", r)
	}
	meta := filepath.Join(h.layout.TemplateDir(tmpls[0].Key), templateMetaFile)
	if err := os.WriteFile(meta, []byte(`{"version":"another"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	stale := h.create(t, "stale", false)
	if got, _ := h.store.GetVM(ctx, stale.ID); got.State != model.StateRunning {
		t.Fatalf("a vm whose template failed: %s", got.State)
	}
	if b, _ := os.ReadFile(meta); !strings.Contains(string(b), fakevmm.SnapshotVersion) {
		t.Errorf("the stale template was not replaced: %s", b)
	}
	// One template per combination of sizes, the oldest beyond four
	// evicted.
	for i := 1; i <= maxTemplatesPerImage+1; i++ {
		h.createWith(t, CreateRequest{Name: fmt.Sprintf("size-%d", i), Disk: fmt.Sprintf("%dG", i+1)})
	}
	if n := len(h.svc.Templates()); n != maxTemplatesPerImage {
		t.Errorf("%d templates of one image, want %d", n, maxTemplatesPerImage)
	}
	if n, err := h.svc.SweepTemplates(ctx, false); err != nil || n != maxTemplatesPerImage {
		// The fake's image is in the catalog, never stored: no content.
		t.Errorf("sweep removed %d templates (%v), want those whose content is unknown", n, err)
	}
	u, err := h.svc.SavedUsage(ctx)
	if err != nil || u.Templates != 0 {
		t.Errorf("saved usage %+v %v", u, err)
	}
}

func waitRunning(t *testing.T, h *harness, id string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if v, err := h.store.GetVM(context.Background(), id); err == nil && v.State == model.StateRunning {
			return
		}
	}
	t.Fatalf("vm %s never ran", id)
}

// A driver that takes no snapshots leaves no templates and refuses
// snapshots and forks with a typed error, leaving no copy behind.
func TestRefusedSaves(t *testing.T) {
	h := newHarness(t, fakevmm.New())
	ctx := context.Background()
	vm := h.create(t, "plain", false)
	if n := len(h.svc.Templates()); n != 0 {
		t.Fatalf("%d templates left by a driver that takes no snapshots", n)
	}
	if _, err := h.svc.Snapshot(ctx, vm.Name, "s"); !errors.Is(err, model.ErrInvalid) {
		t.Fatalf("snapshot: %v", err)
	}
	if _, err := h.svc.Fork(ctx, vm.Name, "f", 1); !errors.Is(err, model.ErrInvalid) {
		t.Fatalf("fork: %v", err)
	}
	if _, err := h.store.GetVM(ctx, "f"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("a refused fork left its copy: %v", err)
	}
}

// Templates another daemon build left can never match again: the sweep
// (at start-up, image delete and prune) removes them and keeps this
// build's.
func TestSweepRemovesOtherBuildsTemplates(t *testing.T) {
	h := newHarness(t, fakevmm.NewSnapshotting())
	ctx := context.Background()
	h.create(t, "first", false)
	tmpls := h.svc.Templates()
	if len(tmpls) != 1 || tmpls[0].Build != "b1" {
		t.Fatalf("templates after a first boot: %+v", tmpls)
	}
	// Of an image content that is known (the fake's catalog image is
	// never stored), so that only the build decides.
	meta := filepath.Join(h.layout.TemplateDir(tmpls[0].Key), templateMetaFile)
	b, _ := os.ReadFile(meta)
	var m templateMeta
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m.ImageID = "sha256:known"
	b, _ = json.Marshal(m)
	if err := os.WriteFile(meta, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.store.InsertImage(ctx, model.Image{Name: "known", ID: m.ImageID}, false); err != nil {
		t.Fatal(err)
	}
	if n, err := h.svc.SweepTemplates(ctx, false); err != nil || n != 0 {
		t.Fatalf("sweep of this build's template: %d %v", n, err)
	}
	h.svc.host.(*fakeHost).build = "b2"
	if n, err := h.svc.SweepTemplates(ctx, false); err != nil || n != 1 {
		t.Fatalf("sweep of another build's template: %d %v", n, err)
	}
	if n := len(h.svc.Templates()); n != 0 {
		t.Fatalf("%d templates left", n)
	}
}
