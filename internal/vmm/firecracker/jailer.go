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
	// host maps an in-jail path to the host path of the same file.
	host func(in string) string
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

// prepareJail hard-links the VM's kernel, initrd and disks into the chroot
// and returns the spec and kernel path as the jailed Firecracker sees them.
// Files the VM writes (its own disks, log, metrics) are given to the
// jailer's uid/gid; the shared image files are only linked (they must be
// world-readable, and on the same filesystem as the chroot base).
func (d *Driver) prepareJail(spec vmm.Spec, kernelPath string) (vmm.Spec, string, jail, error) {
	root := filepath.Join(d.jailDir(spec.VM.ID), "root")
	j := jail{root: root, host: func(in string) string { return filepath.Join(root, in) }}
	if err := os.MkdirAll(root, 0o750); err != nil {
		return spec, "", j, fmt.Errorf("creating jail: %w", err)
	}
	if err := os.Chown(root, d.Jailer.UID, d.Jailer.GID); err != nil {
		return spec, "", j, fmt.Errorf("creating jail: %w", err)
	}
	link := func(src, name string, own bool) (string, error) {
		dst := filepath.Join(root, name)
		_ = os.Remove(dst)
		if err := os.Link(src, dst); err != nil {
			return "", fmt.Errorf("linking %s into the jail (jailer_chroot_base must be on the same filesystem as the state directory): %w", src, err)
		}
		if own {
			if err := os.Chown(dst, d.Jailer.UID, d.Jailer.GID); err != nil {
				return "", fmt.Errorf("giving %s to the jailer user: %w", name, err)
			}
		}
		return "/" + name, nil
	}
	jailed := spec
	jailed.Dir = "/"
	var err error
	if kernelPath, err = link(kernelPath, "vmlinux", false); err != nil {
		return spec, "", j, err
	}
	if spec.Initrd != "" {
		if jailed.Initrd, err = link(spec.Initrd, "initrd", false); err != nil {
			return spec, "", j, err
		}
	}
	jailed.Disks = nil
	for i, disk := range spec.Disks {
		p, err := link(disk.Path, "disk"+strconv.Itoa(i)+".img", !disk.ReadOnly)
		if err != nil {
			return spec, "", j, err
		}
		jailed.Disks = append(jailed.Disks, vmm.Disk{Path: p, ReadOnly: disk.ReadOnly})
	}
	if spec.ControlSocket != "" {
		jailed.ControlSocket = "/agent.sock"
	}
	for _, name := range []string{"firecracker.log", "metrics.json"} {
		f, err := os.OpenFile(filepath.Join(root, name), os.O_CREATE|os.O_WRONLY, 0o640)
		if err != nil {
			return spec, "", j, fmt.Errorf("creating %s in the jail: %w", name, err)
		}
		f.Close()
		if err := os.Chown(filepath.Join(root, name), d.Jailer.UID, d.Jailer.GID); err != nil {
			return spec, "", j, fmt.Errorf("giving %s to the jailer user: %w", name, err)
		}
	}
	return jailed, kernelPath, j, nil
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
