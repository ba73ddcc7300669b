package firecracker

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/banger-dev/banger/internal/host/run"
	"github.com/banger-dev/banger/internal/vmm"
)

// jail is where one VM's jailed Firecracker lives: the jailer chroots it
// into <base>/<exec name>/<id>/root, so every file it opens must be there
// and every path in an API request is relative to that root.
type jail struct {
	root string
	// kernel and snapshot are the boot's kernel and the state to load, as
	// the jailed process names them ("" when there is none).
	kernel, snapshot string
}

// host is the host path of the jail's file in.
func (j jail) host(in string) string { return filepath.Join(j.root, in) }

// jailedState is the name, in a jail's root, of a snapshot's state on its
// way out of (Save) or into (a load) the jail; its memory is beside it.
const jailedState = "snapshot.state"

// dropState removes a snapshot's names from a jail's root: after a load
// (the process has what it needs) or a failed save.
func dropState(root string) {
	_ = os.Remove(filepath.Join(root, jailedState))
	_ = os.Remove(filepath.Join(root, memFile(jailedState)))
}

// jailRoot is the root of the jail h's VM runs in, or "" if it runs
// unjailed.
func jailRoot(h vmm.Handles) string {
	if dir := h.Extra["jail"]; dir != "" {
		return filepath.Join(dir, "root")
	}
	return ""
}

func (j *Jailer) chrootBase() string {
	if j.ChrootBase != "" {
		return j.ChrootBase
	}
	return "/srv/jailer"
}

// jailDir is the directory the jailer makes for a VM (removed on cleanup).
func (d *Driver) jailDir(id string) string {
	return filepath.Join(d.Jailer.chrootBase(), filepath.Base(d.binary()), id)
}

// sameFSHint is what to do when a link or rename between the state
// directory and a jail fails: both must be on one filesystem.
const sameFSHint = "jailer_chroot_base must be on the same filesystem as the state directory"

// prepareJail hard-links the VM's kernel, initrd and disks into the chroot
// (or, for a load, the snapshot's state and memory; all on the same
// filesystem as the chroot base) and returns the spec and the jail, with
// the paths as the jailed Firecracker sees them. Files the VM writes (its
// own disks, log, metrics) are given to the jailer's uid/gid.
func (d *Driver) prepareJail(spec vmm.Spec, p process) (vmm.Spec, jail, error) {
	root := filepath.Join(d.jailDir(spec.VM.ID), "root")
	j := jail{root: root}
	if err := os.MkdirAll(root, 0o750); err != nil {
		return spec, j, fmt.Errorf("creating jail: %w", err)
	}
	if err := os.Chown(root, d.Jailer.UID, d.Jailer.GID); err != nil {
		return spec, j, fmt.Errorf("creating jail: %w", err)
	}
	link := func(src, name string) (string, error) {
		dst := filepath.Join(root, name)
		_ = os.Remove(dst)
		if err := os.Link(src, dst); err != nil {
			return "", fmt.Errorf("linking %s into the jail (%s): %w", src, sameFSHint, err)
		}
		return name, nil
	}
	own := func(name string) error {
		if err := os.Chown(filepath.Join(root, name), d.Jailer.UID, d.Jailer.GID); err != nil {
			return fmt.Errorf("giving %s to the jailer user: %w", name, err)
		}
		return nil
	}
	jailed := spec
	jailed.Dir = "/"
	// Read-only files (the kernel and initramfs, the image's root, the
	// VM's config disk, a snapshot to load) are only linked; they stay
	// the daemon's, and the jailed process may read them, never change
	// them. Writable disks are the jailer user's.
	linkRead := func(src, name string) (string, error) {
		if err := d.grantRead(src); err != nil {
			return "", err
		}
		return link(src, name)
	}
	var err error
	if p.kernel != "" {
		if j.kernel, err = linkRead(p.kernel, "vmlinux"); err != nil {
			return spec, j, err
		}
		if spec.Initrd != "" {
			if jailed.Initrd, err = linkRead(spec.Initrd, "initrd"); err != nil {
				return spec, j, err
			}
		}
	}
	if p.snapshot != "" {
		for _, pair := range [][2]string{{p.snapshot, jailedState}, {memFile(p.snapshot), memFile(jailedState)}} {
			if _, err := linkRead(pair[0], pair[1]); err != nil {
				return spec, j, err
			}
		}
		j.snapshot = jailedState
	}
	jailed.Disks = nil
	for i, disk := range spec.Disks {
		var p string
		if disk.ReadOnly {
			p, err = linkRead(disk.Path, driveName(i))
		} else if p, err = link(disk.Path, driveName(i)); err == nil {
			err = own(p)
		}
		if err != nil {
			return spec, j, err
		}
		jailed.Disks = append(jailed.Disks, vmm.Disk{Path: p, ReadOnly: disk.ReadOnly})
	}
	if spec.ControlSocket != "" {
		jailed.ControlSocket = "/agent.sock"
	}
	for _, name := range []string{"firecracker.log", "metrics.json"} {
		f, err := os.OpenFile(filepath.Join(root, name), os.O_CREATE|os.O_WRONLY, 0o640)
		if err != nil {
			return spec, j, fmt.Errorf("creating %s in the jail: %w", name, err)
		}
		f.Close()
		if err := own(name); err != nil {
			return spec, j, err
		}
	}
	return jailed, j, nil
}

// grantRead lets the jailer's group read path when others may not (the
// initramfs is 0640, a config disk or a snapshot 0600): the file stays
// the daemon's, and the group may not write it.
func (d *Driver) grantRead(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("linking %s into the jail: %w", path, err)
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return nil
	}
	if err := os.Chown(path, -1, d.Jailer.GID); err != nil {
		return fmt.Errorf("letting the jailer group read %s: %w", path, err)
	}
	if err := os.Chmod(path, fi.Mode().Perm()&^0o020|0o040); err != nil {
		return fmt.Errorf("letting the jailer group read %s: %w", path, err)
	}
	return nil
}

// saveOut moves a snapshot the jailed Firecracker wrote to jailedState in
// its root out to path (and its memory beside it), as the daemon's own
// files, mode 0600. On failure nothing is left in the jail.
func saveOut(root, path string) error {
	pairs := [][2]string{{filepath.Join(root, jailedState), path}, {filepath.Join(root, memFile(jailedState)), memFile(path)}}
	for _, pair := range pairs {
		if err := os.Rename(pair[0], pair[1]); err != nil {
			dropState(root)
			return fmt.Errorf("moving the snapshot out of the jail (%s): %w", sameFSHint, err)
		}
		if err := os.Chown(pair[1], os.Getuid(), os.Getgid()); err != nil {
			return fmt.Errorf("taking the snapshot from the jailer user: %w", err)
		}
		if err := os.Chmod(pair[1], 0o600); err != nil {
			return fmt.Errorf("taking the snapshot from the jailer user: %w", err)
		}
	}
	return nil
}

// jailerArgv runs Firecracker for id under the jailer, with its API socket
// at /firecracker.sock inside the jail.
func (d *Driver) jailerArgv(id string) ([]string, error) {
	exe, err := filepath.Abs(d.binary())
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(d.binary()) {
		if p, err := run.LookPath(d.binary()); err == nil {
			exe = p
		}
	}
	return []string{d.jailerBinary(),
		"--id", id,
		"--exec-file", exe,
		"--uid", strconv.Itoa(d.Jailer.UID),
		"--gid", strconv.Itoa(d.Jailer.GID),
		"--chroot-base-dir", d.Jailer.chrootBase(),
		"--", "--api-sock", "/firecracker.sock",
	}, nil
}
