package firecracker

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
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
	spec := testSpec(t)
	record := filepath.Join(spec.Dir, "record.jsonl")
	t.Setenv(fctest.EnvRecord, record)
	ctx := context.Background()

	state := filepath.Join(spec.Dir, "state")
	st, err := store.Open(ctx, filepath.Join(spec.Dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opsCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ops := op.NewRegistry(opsCtx, st, nil)
	layout := paths.Layout{StateDir: state}
	svc := vm.New(vm.Config{Layout: layout, Subnet: netip.MustParsePrefix("172.16.0.0/24"),
		DefaultImage: "debian-12", DefaultVCPUs: 2, DefaultMemoryMiB: 512, DefaultDiskMiB: 1024, StopTimeout: 5 * time.Second},
		st, d, &stubHost{spec: spec}, ops, image.Builtin(), nil)

	created, o, err := svc.Create(ctx, vm.CreateRequest{Name: "fc"})
	if err != nil {
		t.Fatal(err)
	}
	if final, _ := ops.Wait(ctx, o.ID); final.State != model.OpSucceeded {
		t.Fatalf("create: %+v", final)
	}
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
