package store

import (
	"context"
	"database/sql"
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
	im := model.Image{Name: "debian-12", ID: "sha256:c1", KernelPath: "/k", RootfsPath: "/r", ModulesPath: "/m", Source: "built-in",
		Digest: "sha256:00", SizeBytes: 42, CreatedAt: time.Now().UTC().Truncate(time.Millisecond),
		Config: &model.ImageConfig{Env: []string{"A=1"}, Cmd: []string{"sh"}, User: "app"}, Layers: []string{"sha256:aa", "sha256:bb"}}
	if err := s.InsertImage(ctx, im, false); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertImage(ctx, im, false); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("duplicate image: want ErrConflict, got %v", err)
	}
	if got, err := s.GetImage(ctx, im.Name); err != nil || !reflect.DeepEqual(got, im) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	// A VM whose image is not local yet holds it by name.
	if err := s.InsertVM(ctx, testVM("aa11", "a", "172.16.0.2")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteImage(ctx, im.Name); !errors.Is(err, model.ErrState) {
		t.Fatalf("delete of an image a vm holds by name: want ErrState, got %v", err)
	}
	if err := s.SetVMImageID(ctx, "aa11", im.ID); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.GetVM(ctx, "a"); v.ImageID != im.ID {
		t.Fatalf("vm image id %q, want %q", v.ImageID, im.ID)
	}

	// The name moves to new content; the VM keeps the old, which is
	// listed without a name and cannot be deleted while the VM lives.
	im2 := im
	im2.ID, im2.RootfsPath, im2.Digest = "sha256:c2", "/r2", "sha256:01"
	if err := s.InsertImage(ctx, im2, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetImage(ctx, im.Name); got.ID != im2.ID || got.RootfsPath != "/r2" {
		t.Fatalf("replaced name reads %+v", got)
	}
	old, err := s.GetImageContent(ctx, im.ID)
	if err != nil || old.Name != "" || old.RootfsPath != "/r" {
		t.Fatalf("old content: %+v %v", old, err)
	}
	all, err := s.ListImages(ctx)
	if err != nil || len(all) != 2 || all[0].ID != im2.ID || all[1].Name != "" || all[1].ID != im.ID {
		t.Fatalf("list: %+v %v", all, err)
	}
	if _, err := s.DeleteImageContent(ctx, im.ID); !errors.Is(err, model.ErrState) {
		t.Fatalf("delete of content a vm uses: want ErrState, got %v", err)
	}
	// The name's new content is used by no VM: it may go.
	if id, err := s.DeleteImage(ctx, im.Name); err != nil || id != im2.ID {
		t.Fatalf("delete name: %q %v", id, err)
	}
	if _, err := s.DeleteImage(ctx, im.Name); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("delete of missing image: want ErrNotFound, got %v", err)
	}
	if got, err := s.DeleteImageContent(ctx, im2.ID); err != nil || got.RootfsPath != "/r2" {
		t.Fatalf("delete unreferenced content: %+v %v", got, err)
	}
	if err := s.DeleteVM(ctx, "aa11"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteImageContent(ctx, im.ID); err != nil {
		t.Fatalf("delete content after its vm: %v", err)
	}

	// Two names share one content; it lives while either does.
	for _, n := range []string{"x", "y"} {
		im.Name = n
		if err := s.InsertImage(ctx, im, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DeleteImage(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteImageContent(ctx, im.ID); !errors.Is(err, model.ErrState) {
		t.Fatalf("delete of content still named: want ErrState, got %v", err)
	}
	if got, err := s.GetImageContent(ctx, im.ID); err != nil || got.Name != "y" {
		t.Fatalf("content by id: %+v %v", got, err)
	}
}

// A database made before images were stored by content keeps its images
// and the VMs built on them.
func TestMigrateImagesToContents(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "banger.db")
	db, err := sql.Open("sqlite", path+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := migrations()
	for _, m := range ms[:8] {
		if _, err := db.Exec(m.sql); err != nil {
			t.Fatal(m.name, err)
		}
	}
	for _, q := range []string{
		`PRAGMA user_version = 8`,
		`INSERT INTO images (name, kernel_path, rootfs_path, digest, created_at) VALUES ('debian-12', '/k', '/r', 'sha256:00', '2026-01-01T00:00:00Z')`,
		`INSERT INTO vms (id, name, image, vcpus, memory_mib, disk_mib, mac, state, driver, created_at, updated_at)
			VALUES ('aa11', 'a', 'debian-12', 1, 512, 1024, '02:00:00:00:00:01', 'stopped', 'qemu', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')`,
		`INSERT INTO vms (id, name, image, vcpus, memory_mib, disk_mib, mac, state, driver, created_at, updated_at)
			VALUES ('bb22', 'b', 'alpine', 1, 512, 1024, '02:00:00:00:00:02', 'created', 'qemu', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	db.Close()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	im, err := s.GetImage(ctx, "debian-12")
	if err != nil || im.ID != "name:debian-12" || im.RootfsPath != "/r" || im.Digest != "sha256:00" {
		t.Fatalf("migrated image: %+v %v", im, err)
	}
	if a, _ := s.GetVM(ctx, "a"); a.ImageID != im.ID {
		t.Fatalf("vm on a local image: image id %q", a.ImageID)
	}
	if b, _ := s.GetVM(ctx, "b"); b.ImageID != "" {
		t.Fatalf("vm on an image not local: image id %q", b.ImageID)
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

func TestSnapshots(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	if err := s.InsertVM(ctx, testVM("aa11", "a", "172.16.0.2")); err != nil {
		t.Fatal(err)
	}
	sn := model.Snapshot{VMID: "aa11", Name: "one", Driver: "qemu", Version: "7.2.0", ImageID: "sha256:c", VCPUs: 2, MemoryMiB: 1024, DiskMiB: 4096,
		SizeBytes: 42, CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	if err := s.InsertSnapshot(ctx, sn); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertSnapshot(ctx, sn); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("a second snapshot of one name: %v", err)
	}
	if got, err := s.GetSnapshot(ctx, "aa11", "one"); err != nil || !reflect.DeepEqual(got, sn) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if list, err := s.ListSnapshots(ctx, "aa11"); err != nil || len(list) != 1 {
		t.Fatalf("list: %+v %v", list, err)
	}
	if err := s.DeleteSnapshot(ctx, "aa11", "one"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSnapshot(ctx, "aa11", "one"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("delete of a missing snapshot: %v", err)
	}
	// Snapshots go with their VM.
	if err := s.InsertSnapshot(ctx, sn); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVM(ctx, "aa11"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSnapshot(ctx, "aa11", "one"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("a deleted vm's snapshot: %v", err)
	}
}
