package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/model"
)

const vmColumns = `v.id, v.name, v.image, v.vcpus, v.memory_mib, v.disk_mib, COALESCE(l.ip, ''),
	v.mac, v.state, v.last_error, v.driver, v.auto_remove, v.publish, v.network, v.created_at, v.updated_at, v.image_id`

const vmFrom = ` FROM vms v LEFT JOIN ip_leases l ON l.vm_id = v.id`

type rowScanner interface{ Scan(dest ...any) error }

func scanVM(r rowScanner) (model.VM, error) {
	var (
		vm               model.VM
		state, publish   string
		created, updated string
	)
	err := r.Scan(&vm.ID, &vm.Name, &vm.Image, &vm.VCPUs, &vm.MemoryMiB, &vm.DiskMiB, &vm.IP,
		&vm.MAC, &state, &vm.LastError, &vm.Driver, &vm.AutoRemove, &publish, &vm.Network, &created, &updated, &vm.ImageID)
	if err == nil && publish != "" {
		// Written by InsertVM from parsed maps; unreadable means a
		// damaged row, which should not hide the VM.
		vm.Publish, _ = model.ParsePortMaps(strings.Fields(publish))
	}
	vm.State = model.State(state)
	vm.CreatedAt, vm.UpdatedAt = parseTime(created), parseTime(updated)
	return vm, err
}

func publishColumn(maps []model.PortMap) string {
	s := make([]string, len(maps))
	for i, p := range maps {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}

// InsertVM records a new VM and its IP lease in one transaction. A clash on
// name, ID, IP or MAC is reported as model.ErrConflict.
func (s *Store) InsertVM(ctx context.Context, vm model.VM) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning vm insert: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	_, err = tx.ExecContext(ctx, `INSERT INTO vms
		(id, name, image, vcpus, memory_mib, disk_mib, mac, state, last_error, driver, auto_remove, publish, network, created_at, updated_at, image_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		vm.ID, vm.Name, vm.Image, vm.VCPUs, vm.MemoryMiB, vm.DiskMiB, vm.MAC, string(vm.State),
		vm.LastError, vm.Driver, vm.AutoRemove, publishColumn(vm.Publish), vm.NetworkMode(), fmtTime(vm.CreatedAt), fmtTime(vm.UpdatedAt), vm.ImageID)
	if err != nil {
		if isUnique(err) {
			return model.Errorf(model.ErrConflict, "vm name %q is already in use", vm.Name)
		}
		return fmt.Errorf("inserting vm %s: %w", vm.Name, err)
	}
	if vm.IP == "" {
		// A VM without a network leases no address.
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("committing vm %s: %w", vm.Name, err)
		}
		return nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO ip_leases (ip, vm_id, leased_at) VALUES (?, ?, ?)`,
		vm.IP, vm.ID, fmtTime(vm.CreatedAt)); err != nil {
		if isUnique(err) {
			return model.Errorf(model.ErrConflict, "ip %s is already leased", vm.IP)
		}
		return fmt.Errorf("leasing ip for vm %s: %w", vm.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing vm %s: %w", vm.Name, err)
	}
	return nil
}

// GetVM finds a VM by ID, name, or a unique prefix of its ID (at least
// four hex digits), as docker accepts.
func (s *Store) GetVM(ctx context.Context, ref string) (model.VM, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+vmColumns+vmFrom+` WHERE v.id = ? OR v.name = ?`, ref, ref)
	vm, err := scanVM(row)
	if errors.Is(err, sql.ErrNoRows) && len(ref) >= 4 && strings.Trim(ref, "0123456789abcdef") == "" {
		vms, qerr := queryAll(ctx, s.db, "vms", scanVM, `SELECT `+vmColumns+vmFrom+` WHERE substr(v.id, 1, ?) = ? LIMIT 2`, len(ref), ref)
		switch {
		case qerr != nil:
			return model.VM{}, qerr
		case len(vms) == 1:
			return vms[0], nil
		case len(vms) > 1:
			return model.VM{}, model.Errorf(model.ErrConflict, "%q is the start of more than one vm's ID; give more of it, or the name", ref)
		}
	}
	if errors.Is(err, sql.ErrNoRows) {
		return model.VM{}, model.Errorf(model.ErrNotFound, "vm %q not found; `banger vm list` shows the VMs", ref)
	}
	if err != nil {
		return model.VM{}, fmt.Errorf("reading vm %q: %w", ref, err)
	}
	return vm, nil
}

// ListVMs returns every VM, oldest first.
func (s *Store) ListVMs(ctx context.Context) ([]model.VM, error) {
	return queryAll(ctx, s.db, "vms", scanVM, `SELECT `+vmColumns+vmFrom+` ORDER BY v.created_at, v.name`)
}

// SetVMState records a VM's state and last error.
func (s *Store) SetVMState(ctx context.Context, id string, state model.State, lastErr string) error {
	res, err := s.exec(ctx, `UPDATE vms SET state = ?, last_error = ?, updated_at = ? WHERE id = ?`,
		string(state), lastErr, fmtTime(time.Now()), id)
	if err != nil {
		return fmt.Errorf("updating vm %s state: %w", id, err)
	}
	return expectOne(res, "vm", id)
}

// DeleteVM removes a VM; its IP lease goes with it.
func (s *Store) DeleteVM(ctx context.Context, id string) error {
	res, err := s.exec(ctx, `DELETE FROM vms WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("deleting vm %s: %w", id, err)
	}
	return expectOne(res, "vm", id)
}

// LeasedIPs returns every guest IP currently leased.
func (s *Store) LeasedIPs(ctx context.Context) ([]string, error) {
	return queryAll(ctx, s.db, "ip leases", func(r rowScanner) (string, error) {
		var ip string
		err := r.Scan(&ip)
		return ip, err
	}, `SELECT ip FROM ip_leases`)
}

func expectOne(res sql.Result, kind, id string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("checking %s %s update: %w", kind, id, err)
	}
	if n == 0 {
		return model.Errorf(model.ErrNotFound, "%s %q not found", kind, id)
	}
	return nil
}

// SetVMResources records a VM's vCPUs, memory and work disk size.
func (s *Store) SetVMResources(ctx context.Context, id string, vcpus int, memoryMiB, diskMiB int64) error {
	res, err := s.exec(ctx, `UPDATE vms SET vcpus = ?, memory_mib = ?, disk_mib = ?, updated_at = ? WHERE id = ?`,
		vcpus, memoryMiB, diskMiB, fmtTime(time.Now()), id)
	if err != nil {
		return fmt.Errorf("updating vm %s resources: %w", id, err)
	}
	return expectOne(res, "vm", id)
}

// SetVMDriver records the driver a VM runs with. A VM created while no
// driver was usable adopts one at its first start and keeps it.
func (s *Store) SetVMDriver(ctx context.Context, id, driver string) error {
	res, err := s.exec(ctx, `UPDATE vms SET driver = ?, updated_at = ? WHERE id = ?`, driver, fmtTime(time.Now()), id)
	if err != nil {
		return fmt.Errorf("updating vm %s driver: %w", id, err)
	}
	return expectOne(res, "vm", id)
}

// SetVMImageID records the image content a VM boots from, once its image
// is local.
func (s *Store) SetVMImageID(ctx context.Context, id, imageID string) error {
	res, err := s.exec(ctx, `UPDATE vms SET image_id = ?, updated_at = ? WHERE id = ?`, imageID, fmtTime(time.Now()), id)
	if err != nil {
		return fmt.Errorf("updating vm %s image: %w", id, err)
	}
	return expectOne(res, "vm", id)
}

// SetVMAutoRemove sets whether the next start-up deletes the VM (see
// model.VM.AutoRemove).
func (s *Store) SetVMAutoRemove(ctx context.Context, id string, on bool) error {
	res, err := s.exec(ctx, `UPDATE vms SET auto_remove = ?, updated_at = ? WHERE id = ?`, on, fmtTime(time.Now()), id)
	if err != nil {
		return fmt.Errorf("updating vm %s auto-remove: %w", id, err)
	}
	return expectOne(res, "vm", id)
}
