package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/model"
)

// On a full filesystem, the writes that free space (a VM's state, its
// deletion) still go through: the store gives up its reserve for them.
func TestWritesOnAFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI must run as root to mount the small filesystem this test fills")
		}
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=40m"); err != nil {
		t.Fatalf("mounting tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(dir, "banger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	vm := model.VM{ID: "0123456789abcdef", Name: "a", Image: "debian-12", VCPUs: 1, MemoryMiB: 512, DiskMiB: 1024,
		IP: "172.16.0.2", MAC: "02:00:00:00:00:02", State: model.StateRunning, Driver: "qemu", CreatedAt: now, UpdatedAt: now}
	if err := s.InsertVM(ctx, vm); err != nil {
		t.Fatal(err)
	}
	// Fill the filesystem.
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()
	if err := s.SetVMState(ctx, vm.ID, model.StateStopped, "the disk is full"); err != nil {
		t.Fatalf("recording a stop on a full disk: %v", err)
	}
	if err := s.DeleteVM(ctx, vm.ID); err != nil {
		t.Fatalf("deleting a vm on a full disk: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "banger.db.reserve")); !os.IsNotExist(err) {
		t.Fatalf("the reserve was not used: %v", err)
	}
}
