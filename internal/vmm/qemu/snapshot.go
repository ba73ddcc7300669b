package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/host/disk"
	"github.com/banger-dev/banger/internal/vmm"
)

// Save pauses the guest and writes its memory and device state to path:
// QEMU's migration stream, into a descriptor handed over QMP (no shell
// command line). The guest stays paused; Resume continues it. It returns
// QEMU's version and what a restore must spawn to match (see memory).
func (d *Driver) Save(ctx context.Context, h vmm.Handles, path string) (string, error) {
	return d.save(ctx, h, path, false)
}

// SaveTemplate is Save for a VM whose RAM is its own memfd (booted with
// Spec.LeavesTemplate): the state at path is the devices' alone, and the
// RAM is a copy of the memfd in MemoryFile beside it, taken while the
// guest is paused, which the VMs StartFrom starts map copy-on-write. Any
// other VM is saved as Save does.
func (d *Driver) SaveTemplate(ctx context.Context, h vmm.Handles, path string) (string, error) {
	if !handlesMemory(h).memfd {
		return d.Save(ctx, h, path)
	}
	src, err := memfdPath(h)
	if err != nil {
		return "", err
	}
	version, err := d.save(ctx, h, path, true)
	if err != nil {
		return "", err
	}
	// Made first, so the copy keeps this mode (cp would take the
	// memfd's 0777), and synced before the template is published: a host
	// crash must not leave a template whose memory is not its state's.
	dst := filepath.Join(filepath.Dir(path), MemoryFile)
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("creating the memory file: %w", err)
	}
	defer f.Close()
	if err := disk.Copy(ctx, src, dst); err != nil {
		return "", fmt.Errorf("copying the guest's memory: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("writing the memory file: %w", err)
	}
	return version, nil
}

// save is Save; with memoryFile, RAM mapped shared (a VM's memfd) is
// left out of the stream (QEMU's x-ignore-shared).
func (d *Driver) save(ctx context.Context, h vmm.Handles, path string, memoryFile bool) (string, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("creating the memory file: %w", err)
	}
	defer f.Close()
	q, err := dialQMP(h.Extra["qmp"], 30*time.Minute)
	if err != nil {
		return "", err
	}
	defer q.Close()
	version, err := qmpVersion(q)
	if err != nil {
		return "", err
	}
	// Set either way: a capability outlives the migration it was set for
	// (a VM started from a template has it from its incoming one), and
	// the stream carries it, which a restore must then match.
	if err := setIgnoreShared(q, memoryFile); err != nil {
		return "", err
	}
	m := handlesMemory(h)
	if _, err := q.run("stop", nil, nil); err != nil {
		return "", err
	}
	// The stream is local: no reason to hold it to QEMU's default rate.
	if _, err := q.run("migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}, nil); err != nil {
		return "", err
	}
	if _, err := q.run("getfd", map[string]string{"fdname": "banger-save"}, f); err != nil {
		return "", err
	}
	if _, err := q.run("migrate", map[string]string{"uri": "fd:banger-save"}, nil); err != nil {
		return "", err
	}
	if err := waitMigration(ctx, q); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("writing the memory file: %w", err)
	}
	return savedVersion(version, m, memoryFile), f.Close()
}

// setIgnoreShared sets the x-ignore-shared migration capability: a RAM
// block mapped from a file is not in the stream, the file holds it.
func setIgnoreShared(q *qmp, on bool) error {
	_, err := q.run("migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": on}}}, nil)
	return err
}

// Resume continues a guest Save paused.
func (d *Driver) Resume(_ context.Context, h vmm.Handles) error {
	return qmpCommand(h.Extra["qmp"], "cont")
}

// StartFrom spawns QEMU for spec waiting for an incoming migration, feeds
// it the state Save wrote at path, and returns once the guest runs on
// from there. A QEMU of another version than the one that saved is
// refused before anything is loaded.
func (d *Driver) StartFrom(ctx context.Context, spec vmm.Spec, path, version string) (vmm.Handles, error) {
	f, err := os.Open(path)
	if err != nil {
		return vmm.Handles{}, fmt.Errorf("opening the memory file: %w", err)
	}
	defer f.Close()
	version, m := restoreMemory(version, path)
	if m.file != "" && !disk.Exists(m.file) {
		return vmm.Handles{}, fmt.Errorf("%w: its memory file %s is missing", vmm.ErrSnapshotMismatch, m.file)
	}
	h, err := d.start(ctx, spec, m, []string{"-incoming", "defer"})
	if err != nil {
		return vmm.Handles{}, err
	}
	fail := func(err error) (vmm.Handles, error) {
		_ = d.Stop(context.WithoutCancel(ctx), h, 0)
		_ = d.Cleanup(context.WithoutCancel(ctx), h)
		return vmm.Handles{}, err
	}
	q, err := dialQMP(h.Extra["qmp"], 30*time.Minute)
	if err != nil {
		return fail(err)
	}
	defer q.Close()
	got, err := qmpVersion(q)
	if err != nil {
		return fail(err)
	}
	if got != version {
		return fail(fmt.Errorf("%w: it was taken with QEMU %s and this is QEMU %s", vmm.ErrSnapshotMismatch, version, got))
	}
	if m.file != "" {
		// The RAM is the file's, mapped copy-on-write; the stream has
		// only the devices.
		if err := setIgnoreShared(q, true); err != nil {
			return fail(err)
		}
	}
	if _, err := q.run("getfd", map[string]string{"fdname": "banger-restore"}, f); err != nil {
		return fail(err)
	}
	// QEMU announces the NIC's MAC after a load, and that MAC is the one
	// saved: for a fork it is another VM's, and the bridge would send
	// that VM's traffic here. The agent announces the right one.
	if _, err := q.run("migrate-set-parameters", map[string]int{"announce-rounds": 0}, nil); err != nil {
		return fail(err)
	}
	if _, err := q.run("migrate-incoming", map[string]string{"uri": "fd:banger-restore"}, nil); err != nil {
		return fail(err)
	}
	for {
		var st struct {
			Running bool   `json:"running"`
			Status  string `json:"status"`
		}
		ret, err := q.run("query-status", nil, nil)
		if err != nil {
			return fail(fmt.Errorf("loading the snapshot: %w; %s", err, vmm.FileTail(stderrFile(spec.Dir), 800)))
		}
		if err := json.Unmarshal(ret, &st); err != nil {
			return fail(err)
		}
		if st.Running {
			return h, nil
		}
		if st.Status == "paused" {
			// The state carries the run state of its save, which was
			// paused: loaded now, go on.
			if _, err := q.run("cont", nil, nil); err != nil {
				return fail(err)
			}
			continue
		}
		if st.Status != "inmigrate" && st.Status != "prelaunch" {
			return fail(fmt.Errorf("loading the snapshot left the guest %s; %s", st.Status, vmm.FileTail(stderrFile(spec.Dir), 800)))
		}
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func stderrFile(dir string) string {
	_, _, stderr := files(dir)
	return stderr
}

func qmpVersion(q *qmp) (string, error) {
	ret, err := q.run("query-version", nil, nil)
	if err != nil {
		return "", err
	}
	var v struct {
		QEMU struct {
			Major, Minor, Micro int
		} `json:"qemu"`
		Package string `json:"package"`
	}
	if err := json.Unmarshal(ret, &v); err != nil {
		return "", fmt.Errorf("decoding qmp query-version: %w", err)
	}
	return strings.TrimSpace(fmt.Sprintf("%d.%d.%d %s", v.QEMU.Major, v.QEMU.Minor, v.QEMU.Micro, strings.TrimSpace(v.Package))), nil
}

// errMigration is a migration QEMU reports as failed.
var errMigration = errors.New("the migration failed")

// waitMigration polls an outgoing migration until it completes.
func waitMigration(ctx context.Context, q *qmp) error {
	for {
		ret, err := q.run("query-migrate", nil, nil)
		if err != nil {
			return err
		}
		var st struct {
			Status string `json:"status"`
			Error  string `json:"error-desc"`
		}
		if err := json.Unmarshal(ret, &st); err != nil {
			return fmt.Errorf("decoding qmp query-migrate: %w", err)
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			why := st.Status
			if st.Error != "" {
				why = st.Error
			}
			return fmt.Errorf("%w: %s", errMigration, why)
		}
		select {
		case <-ctx.Done():
			_, _ = q.run("migrate_cancel", nil, nil)
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
