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

// errCrossDevice is a jail on another filesystem than the state directory:
// files are hard-linked or renamed between the two.
const errCrossDevice = "jailer_chroot_base must be on the same filesystem as the state directory"

// prepareJail hard-links the VM's kernel, initrd and disks into the chroot
// (or, for a load, the snapshot's state and memory) and returns the spec
// and the jail, with the paths as the jailed Firecracker sees them. Files
// the VM writes (its own disks, log, metrics) are given to the jailer's
// uid/gid; the shared image files are only linked (they must be
// world-readable, and on the same filesystem as the chroot base).
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
			return "", fmt.Errorf("linking %s into the jail (%s): %w", src, errCrossDevice, err)
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
	var err error
	if p.kernel != "" {
		if j.kernel, err = link(p.kernel, "vmlinux"); err != nil {
			return spec, j, err
		}
		if spec.Initrd != "" {
			if jailed.Initrd, err = link(spec.Initrd, "initrd"); err != nil {
				return spec, j, err
			}
		}
	}
	if p.snapshot != "" {
		// The saved files stay the daemon's: the jailed process may read
		// them (through its group), never change them.
		for _, pair := range [][2]string{{p.snapshot, jailedState}, {memFile(p.snapshot), memFile(jailedState)}} {
			if err := os.Chown(pair[0], -1, d.Jailer.GID); err != nil {
				return spec, j, fmt.Errorf("letting the jailer group read %s: %w", pair[0], err)
			}
			if err := os.Chmod(pair[0], 0o640); err != nil {
				return spec, j, fmt.Errorf("letting the jailer group read %s: %w", pair[0], err)
			}
			if _, err := link(pair[0], pair[1]); err != nil {
				return spec, j, err
			}
		}
		j.snapshot = jailedState
	}
	jailed.Disks = nil
	for i, disk := range spec.Disks {
		p, err := link(disk.Path, driveName(i))
		if err != nil {
			return spec, j, err
		}
		if !disk.ReadOnly {
			if err := own(p); err != nil {
				return spec, j, err
			}
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

// saveOut moves a snapshot the jailed Firecracker wrote to jailedState in
// its root out to path (and its memory beside it), as the daemon's own
// files, mode 0600. On failure nothing is left in the jail.
func saveOut(root, path string) error {
	pairs := [][2]string{{filepath.Join(root, jailedState), path}, {filepath.Join(root, memFile(jailedState)), memFile(path)}}
	for _, pair := range pairs {
		if err := os.Rename(pair[0], pair[1]); err != nil {
			dropState(root)
			return fmt.Errorf("moving the snapshot out of the jail (%s): %w", errCrossDevice, err)
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
