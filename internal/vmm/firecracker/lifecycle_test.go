package firecracker

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/image"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/op"
	"github.com/banger-dev/banger/internal/paths"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/vm"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/vmm/firecracker/fctest"
)

// stubHost prepares a spec with real (tiny) files and does no host
// networking: the VM service drives the real Firecracker driver against the
// fake firecracker, end to end through create, start, stop and delete.
type stubHost struct{ spec vmm.Spec }

func (s *stubHost) Created(context.Context, model.VM, bool, func(string)) error { return nil }
func (s *stubHost) Prepare(_ context.Context, v model.VM) (vmm.Spec, error) {
	sp := s.spec
	sp.VM = v
	return sp, nil
}
func (s *stubHost) Ready(context.Context, model.VM, vmm.Handles) error { return nil }
func (s *stubHost) Maintenance(_ context.Context, v model.VM) (vmm.Spec, error) {
	return s.Prepare(context.Background(), v)
}
func (s *stubHost) MaintenanceReady(context.Context, model.VM, vmm.Handles) error { return nil }
func (s *stubHost) Resumed(context.Context, model.VM, vmm.Handles) error          { return nil }
func (s *stubHost) Release(context.Context, model.VM, vmm.Handles) error          { return nil }
func (s *stubHost) Records(context.Context, []model.VM)                           {}
func (s *stubHost) TemplateKey(context.Context, model.VM) (string, error) {
	return "", errors.New("no templates here")
}
func (s *stubHost) TemplateBuild() string                                  { return "" }
func (s *stubHost) Adopted(context.Context, model.VM, vmm.Handles)         {}
func (s *stubHost) SyncClock(context.Context, model.VM, vmm.Handles) error { return nil }

func TestServiceLifecycleOnFirecracker(t *testing.T) {
	d := &Driver{Binary: fake(t)}
	spec, record := recordedSpec(t)
	ctx := context.Background()

	layout := paths.Layout{StateDir: filepath.Join(spec.Dir, "state")}
	svc, ops := serviceOn(t, d, &stubHost{spec: spec}, layout)
	created := createRunning(t, svc, ops, "fc")
	got, _ := svc.Get(ctx, "fc")
	if got.State != model.StateRunning || got.Driver != "firecracker" {
		t.Fatalf("after create: %+v", got)
	}
	if _, err := os.Stat(layout.HandlesFile(created.ID)); err != nil {
		t.Fatalf("handles file: %v", err)
	}
	if _, err := svc.Stop(ctx, "fc"); err != nil {
		t.Fatal(err)
	}
	reqs, _ := fctest.ReadRecord(record)
	if last := reqs[len(reqs)-1]; last.Path != "/actions" || last.Status != 204 {
		t.Fatalf("stop did not end with an accepted action: %+v", last)
	}
	if _, err := svc.Start(ctx, "fc"); err != nil {
		t.Fatal(err)
	}
	if err := svc.Delete(ctx, "fc", true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(layout.VMDir(created.ID)); !os.IsNotExist(err) {
		t.Fatal("vm dir left after delete")
	}
	assertNoFake(t, spec)
}

// serviceOn is a VM service on driver d and host, with its store in
// layout's state directory.
func serviceOn(t *testing.T, d *Driver, host vm.Host, layout paths.Layout) (*vm.Service, *op.Registry) {
	t.Helper()
	if err := os.MkdirAll(layout.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), filepath.Join(layout.StateDir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opsCtx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ops := op.NewRegistry(opsCtx, st, nil)
	svc := vm.New(vm.Config{Layout: layout, Subnet: netip.MustParsePrefix("172.16.0.0/24"),
		DefaultImage: "debian-12", DefaultVCPUs: 2, DefaultMemoryMiB: 512, DefaultDiskMiB: 1024, StopTimeout: 5 * time.Second},
		st, d, host, ops, image.Builtin(), nil)
	return svc, ops
}

// vmDirHost prepares each VM in its own directory, as banger's host
// does: the shared image file outside, the VM's writable disks (made at
// the first boot, replaced by a restore or a fork's copies) and config
// disk inside.
type vmDirHost struct {
	stubHost
	layout paths.Layout
	rootfs string
	key    string // TemplateKey, when set: the first boot leaves a template
}

func (s *vmDirHost) TemplateKey(ctx context.Context, v model.VM) (string, error) {
	if s.key == "" {
		return s.stubHost.TemplateKey(ctx, v)
	}
	return s.key, nil
}

// newVMDirHost lays VMs out in a state directory of the test's, short
// enough for the sockets' paths.
func newVMDirHost(t *testing.T, spec vmm.Spec) *vmDirHost {
	t.Helper()
	state, err := os.MkdirTemp("", "fcsvc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	return &vmDirHost{stubHost: stubHost{spec: spec}, layout: paths.Layout{StateDir: state}, rootfs: spec.Disks[0].Path}
}

func (s *vmDirHost) Prepare(_ context.Context, v model.VM) (vmm.Spec, error) {
	sp := s.spec
	sp.VM, sp.Dir = v, s.layout.VMDir(v.ID)
	sp.ConsoleLog, sp.ControlSocket = filepath.Join(sp.Dir, "console.log"), filepath.Join(sp.Dir, "agent.sock")
	sp.Disks = []vmm.Disk{{Path: s.rootfs, ReadOnly: true}}
	for _, name := range []string{"upper.ext4", "work.ext4", "config.img"} {
		p := filepath.Join(sp.Dir, name)
		if _, err := os.Stat(p); err != nil {
			if err := os.WriteFile(p, []byte(name), 0o600); err != nil {
				return sp, err
			}
		}
		sp.Disks = append(sp.Disks, vmm.Disk{Path: p, ReadOnly: name == "config.img"})
	}
	return sp, nil
}

// The VM service on the jailed driver, against the fake jailer and fake
// firecracker: a snapshot, a fork of two copies that each run in a jail
// of their own on their own disks, a restore, and deletes that leave no
// jail and no VM directory.
func TestServiceForkOnJailedFirecracker(t *testing.T) {
	d, spec, host, svc, src := jailedCreate(t, "src")
	ctx, layout := context.Background(), host.layout
	if _, err := svc.Snapshot(ctx, "src", "s1"); err != nil {
		t.Fatalf("snapshot under the jailer: %v", err)
	}
	forks, err := svc.Fork(ctx, "src", "f", 2)
	if err != nil {
		t.Fatalf("fork under the jailer: %v", err)
	}
	srcSpec, _ := host.Prepare(ctx, src)
	for _, f := range forks {
		h := readHandles(t, layout.HandlesFile(f.ID))
		if got, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(h.PID), "root")); got != jailRoot(h) || !strings.Contains(got, f.ID) {
			t.Errorf("fork %s runs in %q, want a jail of its own", f.Name, got)
		}
		fspec, _ := host.Prepare(ctx, f)
		assertDisks(t, h.PID, fspec, vmm.Spec{Disks: srcSpec.Disks[1:]})
	}
	if _, err := svc.Restore(ctx, "src", "s1"); err != nil {
		t.Fatalf("restore under the jailer: %v", err)
	}
	for _, name := range []string{"src", "f-1", "f-2"} {
		if err := svc.Delete(ctx, name, true); err != nil {
			t.Fatal(err)
		}
	}
	if left, _ := os.ReadDir(filepath.Join(d.Jailer.ChrootBase, "firecracker")); len(left) != 0 {
		t.Errorf("jails left after the deletes: %v", left)
	}
	if left, _ := os.ReadDir(filepath.Join(layout.StateDir, "vms")); len(left) != 0 {
		t.Errorf("vm directories left after the deletes: %v", left)
	}
	assertNoFake(t, spec)
}

// jailedCreate is the VM service on the jailed driver (fake jailer and
// firecracker), each VM in a directory of its own, with the VM name
// created and running.
func jailedCreate(t *testing.T, name string) (*Driver, vmm.Spec, *vmDirHost, *vm.Service, model.VM) {
	t.Helper()
	d := jailedDriver(t)
	spec := testSpec(t)
	t.Setenv(fctest.EnvRecord, filepath.Join(spec.Dir, "record.jsonl"))
	host := newVMDirHost(t, spec)
	svc, ops := serviceOn(t, d, host, host.layout)
	return d, spec, host, svc, createRunning(t, svc, ops, name)
}

// createRunning creates the VM name and waits for its create to succeed.
func createRunning(t *testing.T, svc *vm.Service, ops *op.Registry, name string) model.VM {
	t.Helper()
	created, o, err := svc.Create(context.Background(), vm.CreateRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if final, _ := ops.Wait(context.Background(), o.ID); final.State != model.OpSucceeded {
		t.Fatalf("create %s: %+v", name, final)
	}
	return created
}

func readHandles(t *testing.T, path string) vmm.Handles {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var h vmm.Handles
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// A daemon that restarts finds its jailed VM running (the jailed
// process's command line carries --id too), stops it, and its jail goes.
func TestJailedVMAdoptedAfterRestart(t *testing.T) {
	d, spec, host, _, created := jailedCreate(t, "a")
	ctx := context.Background()
	h := readHandles(t, host.layout.HandlesFile(created.ID))

	restarted, _ := serviceOn(t, d, host, host.layout)
	if err := restarted.Reconcile(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := restarted.Get(ctx, "a"); got.State != model.StateRunning || !d.Alive(h) {
		t.Fatalf("after the restart: %s, alive %v", got.State, d.Alive(h))
	}
	if _, err := restarted.Stop(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if d.Alive(h) {
		t.Fatal("the jailed process runs on after stop")
	}
	if _, err := os.Stat(h.Extra["jail"]); !os.IsNotExist(err) {
		t.Errorf("the jail is left after stop: %v", err)
	}
	if err := restarted.Delete(ctx, "a", true); err != nil {
		t.Fatal(err)
	}
	assertNoFake(t, spec)
}

// Instant VMs under the jailer: the first boot leaves a template (saved
// in its jail, moved out), and the next create loads it in a jail of its
// own, on its own disks.
func TestJailedInstantVM(t *testing.T) {
	d := jailedDriver(t)
	spec := testSpec(t)
	record := filepath.Join(spec.Dir, "record.jsonl")
	t.Setenv(fctest.EnvRecord, record)
	host := newVMDirHost(t, spec)
	host.key = "k1"
	svc, ops := serviceOn(t, d, host, host.layout)
	ctx := context.Background()
	first := createRunning(t, svc, ops, "first")
	if n := len(svc.Templates()); n != 1 {
		t.Fatalf("%d templates after a first jailed boot", n)
	}
	before, _ := fctest.ReadRecord(record)
	second := createRunning(t, svc, ops, "second")
	reqs, _ := fctest.ReadRecord(record)
	loaded := false
	for _, r := range reqs[len(before):] {
		loaded = loaded || (r.Path == "/snapshot/load" && r.Status == 204)
		if r.Path == "/boot-source" {
			t.Errorf("the second vm booted cold: %s %s", r.Method, r.Path)
		}
	}
	if !loaded {
		t.Fatal("the second vm did not load the template")
	}
	h := readHandles(t, host.layout.HandlesFile(second.ID))
	own, _ := host.Prepare(ctx, second)
	firstSpec, _ := host.Prepare(ctx, first)
	assertDisks(t, h.PID, own, vmm.Spec{Disks: firstSpec.Disks[1:]})
	for _, name := range []string{"first", "second"} {
		if err := svc.Delete(ctx, name, true); err != nil {
			t.Fatal(err)
		}
	}
	assertNoFake(t, spec)
}
