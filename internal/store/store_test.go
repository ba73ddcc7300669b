package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/model"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "banger.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func testVM(id, name, ip string) model.VM {
	now := time.Now().UTC().Truncate(time.Millisecond)
	return model.VM{ID: id, Name: name, Image: "debian-12", VCPUs: 2, MemoryMiB: 1024, DiskMiB: 4096,
		IP: ip, MAC: "02:00:" + id[:2] + ":00:00:01", State: model.StateCreated, Driver: "fake",
		CreatedAt: now, UpdatedAt: now}
}

func TestMigrateFromEmptyAndRerun(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	v, err := s.SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := migrations()
	if v != len(ms) || v == 0 {
		t.Fatalf("schema version %d, want %d", v, len(ms))
	}
	if err := s.InsertVM(ctx, testVM("aa11", "a", "172.16.0.2")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Re-opening runs migrate again: a no-op that keeps the data.
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.migrate(ctx); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if v2, _ := s2.SchemaVersion(ctx); v2 != v {
		t.Fatalf("version moved from %d to %d on re-run", v, v2)
	}
	if _, err := s2.GetVM(ctx, "a"); err != nil {
		t.Fatalf("vm lost across reopen: %v", err)
	}
	var mode string
	if err := s2.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	if _, err := s.exec(ctx, "PRAGMA user_version = 999"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(ctx, path); err == nil {
		t.Fatal("opening a database from a newer banger succeeded")
	}
}

func TestVMRoundTripAndConstraints(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	vm := testVM("aa11", "a", "172.16.0.2")
	vm.Publish = []model.PortMap{{Host: 8080, Guest: 80, Proto: "tcp"}, {Host: 2222, Guest: 22, Proto: "tcp"}}
	vm.Network = model.NetworkBridge
	if err := s.InsertVM(ctx, vm); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetVM(ctx, "aa11")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, vm) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, vm)
	}
	// A VM without a network holds no lease, and several can exist.
	for _, id := range []string{"cc01", "cc02"} {
		nn := testVM(id, "none-"+id, "")
		nn.MAC, nn.Network = "02:fe:"+id, model.NetworkNone
		if err := s.InsertVM(ctx, nn); err != nil {
			t.Fatal(err)
		}
		if got, err := s.GetVM(ctx, id); err != nil || got.IP != "" || got.Network != model.NetworkNone {
			t.Fatalf("a vm without a network: %+v, %v", got, err)
		}
	}
	if ips, _ := s.LeasedIPs(ctx); len(ips) != 1 {
		t.Fatalf("leases: %v", ips)
	}
	for _, id := range []string{"cc01", "cc02"} {
		if err := s.DeleteVM(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if byName, _ := s.GetVM(ctx, "a"); byName.ID != vm.ID {
		t.Fatal("lookup by name failed")
	}

	dupName := testVM("bb22", "a", "172.16.0.3")
	if err := s.InsertVM(ctx, dupName); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("duplicate name: want ErrConflict, got %v", err)
	}
	dupIP := testVM("cc33", "c", "172.16.0.2")
	if err := s.InsertVM(ctx, dupIP); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("duplicate ip: want ErrConflict, got %v", err)
	}
	// The failed inserts left nothing behind.
	vms, _ := s.ListVMs(ctx)
	if len(vms) != 1 {
		t.Fatalf("want 1 vm after failed inserts, got %d", len(vms))
	}

	if err := s.SetVMState(ctx, vm.ID, model.StateError, "boom"); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetVM(ctx, "a")
	if got.State != model.StateError || got.LastError != "boom" {
		t.Fatalf("state update not stored: %+v", got)
	}
	if err := s.SetVMState(ctx, "nope", model.StateError, ""); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("update of missing vm: want ErrNotFound, got %v", err)
	}

	if err := s.DeleteVM(ctx, vm.ID); err != nil {
		t.Fatal(err)
	}
	if ips, _ := s.LeasedIPs(ctx); len(ips) != 0 {
		t.Fatalf("lease survived vm delete: %v", ips)
	}
	if _, err := s.GetVM(ctx, "a"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("deleted vm: want ErrNotFound, got %v", err)
	}
	if err := s.DeleteVM(ctx, vm.ID); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("double delete: want ErrNotFound, got %v", err)
	}
}

func TestSchemaRejectsBadState(t *testing.T) {
	s, _ := openTemp(t)
	vm := testVM("aa11", "a", "172.16.0.2")
	vm.State = "exploded"
	if err := s.InsertVM(context.Background(), vm); err == nil {
		t.Fatal("schema accepted an unknown state")
	}
}

func TestImages(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	im := model.Image{Name: "debian-12", KernelPath: "/k", RootfsPath: "/r", ModulesPath: "/m", Source: "built-in",
		Digest: "sha256:00", SizeBytes: 42, CreatedAt: time.Now().UTC().Truncate(time.Millisecond),
		Config: &model.ImageConfig{Env: []string{"A=1"}, Cmd: []string{"sh"}, User: "app"}, Layers: []string{"sha256:aa", "sha256:bb"}}
	if err := s.InsertImage(ctx, im); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertImage(ctx, im); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("duplicate image: want ErrConflict, got %v", err)
	}
	if got, err := s.GetImage(ctx, im.Name); err != nil || !reflect.DeepEqual(got, im) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if err := s.InsertVM(ctx, testVM("aa11", "a", "172.16.0.2")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteImage(ctx, im.Name); !errors.Is(err, model.ErrState) {
		t.Fatalf("delete of image in use: want ErrState, got %v", err)
	}
	if err := s.DeleteVM(ctx, "aa11"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteImage(ctx, im.Name); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteImage(ctx, im.Name); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("delete of missing image: want ErrNotFound, got %v", err)
	}
}

func TestOps(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	old := time.Now().Add(-time.Hour).UTC()
	done := model.Operation{ID: "o1", Kind: "vm.create", Target: "a", State: model.OpSucceeded,
		CreatedAt: old, UpdatedAt: old, FinishedAt: old}
	running := model.Operation{ID: "o2", Kind: "vm.create", Target: "b", State: model.OpRunning,
		Phase: "booting", Done: 1, Total: 3, CreatedAt: old, UpdatedAt: old}
	for _, op := range []model.Operation{done, running} {
		if err := s.PutOp(ctx, op); err != nil {
			t.Fatal(err)
		}
	}
	running.Phase = "waiting for ssh"
	if err := s.PutOp(ctx, running); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetOp(ctx, "o2"); got.Phase != "waiting for ssh" || got.Done != 1 {
		t.Fatalf("upsert not applied: %+v", got)
	}
	failed, err := s.FailRunningOps(ctx, "interrupted")
	if err != nil || len(failed) != 1 || failed[0].ID != "o2" {
		t.Fatalf("FailRunningOps = %+v, %v", failed, err)
	}
	if got, _ := s.GetOp(ctx, "o2"); got.State != model.OpFailed || got.Error != "interrupted" || got.FinishedAt.IsZero() {
		t.Fatalf("running op not failed: %+v", got)
	}
	n, err := s.PruneOps(ctx, time.Now().Add(-time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("PruneOps = %d, %v; want 1 (only o1 finished long ago)", n, err)
	}
	ops, _ := s.ListOps(ctx)
	if len(ops) != 1 || ops[0].ID != "o2" {
		t.Fatalf("after prune: %+v", ops)
	}
	if _, err := s.GetOp(ctx, "o1"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("pruned op: want ErrNotFound, got %v", err)
	}
}

func TestGetVMByIDPrefix(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "b.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	for i, id := range []string{"abcd111111111111", "abcd222222222222"} {
		vm := model.VM{ID: id, Name: fmt.Sprintf("v%d", i), Image: "debian-12", VCPUs: 1, MemoryMiB: 512, DiskMiB: 1024,
			IP: fmt.Sprintf("172.16.0.%d", i+2), MAC: fmt.Sprintf("02:00:00:00:00:0%d", i+2), State: model.StateStopped, Driver: "qemu", CreatedAt: now, UpdatedAt: now}
		if err := s.InsertVM(ctx, vm); err != nil {
			t.Fatal(err)
		}
	}
	if vm, err := s.GetVM(ctx, "abcd1"); err != nil || vm.Name != "v0" {
		t.Fatalf("unique prefix: %+v, %v", vm, err)
	}
	if _, err := s.GetVM(ctx, "abcd"); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("ambiguous prefix: %v", err)
	}
	if _, err := s.GetVM(ctx, "abc"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("too short a prefix: %v", err)
	}
}
