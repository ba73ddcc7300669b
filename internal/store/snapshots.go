package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/banger-dev/banger/internal/model"
)

const snapshotColumns = `vm_id, name, driver, version, image_id, vcpus, memory_mib, disk_mib, size_bytes, created_at`

func scanSnapshot(r rowScanner) (model.Snapshot, error) {
	var (
		sn      model.Snapshot
		created string
	)
	err := r.Scan(&sn.VMID, &sn.Name, &sn.Driver, &sn.Version, &sn.ImageID, &sn.VCPUs, &sn.MemoryMiB, &sn.DiskMiB, &sn.SizeBytes, &created)
	sn.CreatedAt = parseTime(created)
	return sn, err
}

// InsertSnapshot records a snapshot; a name the VM has already is
// model.ErrConflict.
func (s *Store) InsertSnapshot(ctx context.Context, sn model.Snapshot) error {
	_, err := s.exec(ctx, `INSERT INTO snapshots (`+snapshotColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		sn.VMID, sn.Name, sn.Driver, sn.Version, sn.ImageID, sn.VCPUs, sn.MemoryMiB, sn.DiskMiB, sn.SizeBytes, fmtTime(sn.CreatedAt))
	if isUnique(err) {
		return model.Errorf(model.ErrConflict, "the vm has a snapshot %q already; delete it first or choose another name", sn.Name)
	}
	if err != nil {
		return fmt.Errorf("inserting snapshot %s: %w", sn.Name, err)
	}
	return nil
}

// GetSnapshot finds one of a VM's snapshots.
func (s *Store) GetSnapshot(ctx context.Context, vmID, name string) (model.Snapshot, error) {
	sn, err := scanSnapshot(s.db.QueryRowContext(ctx, `SELECT `+snapshotColumns+` FROM snapshots WHERE vm_id = ? AND name = ?`, vmID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return model.Snapshot{}, model.Errorf(model.ErrNotFound, "no snapshot %q of this vm (banger vm snapshot list shows them)", name)
	}
	if err != nil {
		return model.Snapshot{}, fmt.Errorf("reading snapshot %s: %w", name, err)
	}
	return sn, nil
}

// ListSnapshots returns a VM's snapshots, oldest first.
func (s *Store) ListSnapshots(ctx context.Context, vmID string) ([]model.Snapshot, error) {
	return queryAll(ctx, s.db, "snapshots", scanSnapshot, `SELECT `+snapshotColumns+` FROM snapshots WHERE vm_id = ? ORDER BY created_at, name`, vmID)
}

// DeleteSnapshot removes a snapshot's record.
func (s *Store) DeleteSnapshot(ctx context.Context, vmID, name string) error {
	res, err := s.exec(ctx, `DELETE FROM snapshots WHERE vm_id = ? AND name = ?`, vmID, name)
	if err != nil {
		return fmt.Errorf("deleting snapshot %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return model.Errorf(model.ErrNotFound, "no snapshot %q of this vm (banger vm snapshot list shows them)", name)
	}
	return nil
}
