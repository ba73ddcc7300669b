package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/doctor"
	"github.com/banger-dev/banger/internal/host/hostnet"
	"github.com/banger-dev/banger/internal/host/kvmprobe"
	"github.com/banger-dev/banger/internal/host/run"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/rpc"
	"github.com/banger-dev/banger/internal/vmm"
)

// kvmProbeCache is where the KVM probe's verdict is kept, in the state
// directory; driver selection uses the same file.
const kvmProbeCache = "kvm-probe.json"

func (d *Daemon) doctor(ctx context.Context, _ rpc.Caller, _ api.Empty) ([]api.DoctorCheck, error) {
	checks := doctor.Run(ctx, &doctorFacts{d: d})
	out := make([]api.DoctorCheck, 0, len(checks))
	for _, c := range checks {
		out = append(out, api.DoctorCheck{Name: c.Name, Status: string(c.Status), Detail: c.Detail, Fix: c.Fix})
	}
	return out, nil
}

// doctorFacts answers doctor's questions from the daemon's state; the host
// side comes from doctor.System. One value serves one doctor call.
type doctorFacts struct {
	doctor.System
	d *Daemon

	invDone bool
	inv     hostnet.Inventory
	invErr  error
}

func (f *doctorFacts) Driver() (string, string, bool) {
	return f.d.driver.Name(), f.d.driverReason, f.d.notRoot
}

// KVM runs the probe (its boot verdict is cached) on the default image's
// kernel, or any local image's, since the daemon's start-up verdict may
// predate the first image.
func (f *doctorFacts) KVM(ctx context.Context) doctor.KVM {
	kernel := ""
	if im, err := f.d.images.Get(ctx, f.d.config().DefaultImage); err == nil {
		kernel = im.KernelPath
	} else if ims, err := f.d.images.List(ctx); err == nil {
		for _, im := range ims {
			if im.KernelPath != "" {
				kernel = im.KernelPath
				break
			}
		}
	}
	v, _ := kvmprobe.Probe(ctx, kernel, findAgent(), filepath.Join(f.d.layout.StateDir, kvmProbeCache))
	return doctor.KVM{Usable: v.Usable, Cause: string(v.Cause), Reason: v.Reason}
}

// Binary resolves the configured Firecracker and jailer binaries.
func (f *doctorFacts) Binary(ctx context.Context, name string, versionArgs ...string) doctor.Binary {
	switch {
	case name == "firecracker" && f.d.config().FirecrackerBinary != "":
		name = f.d.config().FirecrackerBinary
	case name == "jailer" && f.d.config().JailerBinary != "":
		name = f.d.config().JailerBinary
	}
	return f.System.Binary(ctx, name, versionArgs...)
}

func (f *doctorFacts) inventory(ctx context.Context) (hostnet.Inventory, error) {
	if !f.invDone && f.d.hostnet != nil {
		f.inv, f.invErr = f.d.hostnet.Inventory(ctx)
		f.invDone = true
	}
	if f.d.hostnet == nil {
		return hostnet.Inventory{}, errors.New("host networking is not set up in this daemon")
	}
	return f.inv, f.invErr
}

// Network lists links and nftables tables (Inventory does both, in that
// order, and changes nothing).
func (f *doctorFacts) Network(ctx context.Context) doctor.Network {
	_, err := f.inventory(ctx)
	switch {
	case err == nil:
		return doctor.Network{}
	case errors.Is(err, hostnet.ErrLinks):
		return doctor.Network{LinksErr: err}
	default:
		return doctor.Network{NFTErr: err}
	}
}

func (f *doctorFacts) Socket() doctor.Socket {
	s := doctor.Socket{Path: f.d.opts.Socket, Group: f.d.config().SocketGroup, GroupExists: f.d.hasGroup, GroupGID: f.d.groupID}
	fi, err := os.Stat(s.Path)
	if err != nil {
		s.Err = err
		return s
	}
	s.Mode = fi.Mode().Perm()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.GID = st.Gid
	}
	return s
}

func (f *doctorFacts) StateDir() string { return f.d.layout.StateDir }

// Jailer compares the filesystems of the chroot base (the driver makes it
// when missing) and the state directory.
func (f *doctorFacts) Jailer() doctor.Jailer {
	cfg := f.d.config()
	j := doctor.Jailer{On: cfg.Jailer, ChrootBase: cfg.JailerChrootBase}
	if !j.On {
		return j
	}
	j.SameFilesystem, j.Err = f.SameFilesystem(j.ChrootBase, f.d.layout.StateDir)
	return j
}

func (f *doctorFacts) Saved(ctx context.Context) (doctor.Saved, error) {
	u, err := f.d.vms.SavedUsage(ctx)
	return doctor.Saved{Snapshots: u.Snapshots, Templates: u.Templates, SnapshotBytes: u.SnapshotBytes, TemplateBytes: u.TemplateBytes}, err
}

func (f *doctorFacts) DefaultImage(ctx context.Context) (doctor.Image, error) {
	name := f.d.config().DefaultImage
	im := doctor.Image{Name: name}
	_, err := f.d.images.Get(ctx, name)
	switch {
	case err == nil:
		im.Local = true
	case !errors.Is(err, model.ErrNotFound):
		return im, err
	}
	_, im.InCatalog = f.d.images.Catalog().Lookup(name)
	_, lookErr := run.LookPath("mmdebstrap")
	im.Buildable = im.InCatalog && lookErr == nil
	return im, nil
}

// Catalog is the user's catalog file and what was wrong with it.
func (f *doctorFacts) Catalog() (string, int, error) {
	n := 0
	for _, name := range f.d.images.Catalog().Names() {
		if e, _ := f.d.images.Catalog().Lookup(name); e.User {
			n++
		}
	}
	return f.d.catalogPath, n, f.d.catalogErr
}

// Owned joins the network inventory with the VMs recorded as running and
// the VMM processes found on the host.
func (f *doctorFacts) Owned(ctx context.Context) (doctor.Owned, error) {
	inv, err := f.inventory(ctx)
	if err != nil {
		return doctor.Owned{}, err
	}
	o := doctor.Owned{Bridge: inv.Bridge, NFTable: inv.NFTable, Taps: inv.Taps,
		HeldTaps: f.d.vms.LiveTaps(), PoolSize: f.d.hostnet.Config().PoolSize}
	vms, err := f.d.vms.List(ctx)
	if err != nil {
		return o, err
	}
	for _, v := range vms {
		if v.State != model.StateRunning && v.State != model.StateStarting && v.State != model.StateStopping {
			continue
		}
		b, err := os.ReadFile(f.d.layout.HandlesFile(v.ID))
		if err != nil {
			continue // a boot that has not spawned its VMM yet
		}
		var h vmm.Handles
		if err := json.Unmarshal(b, &h); err != nil || h.PID <= 0 {
			continue
		}
		o.Running = append(o.Running, doctor.VMProcess{Name: v.Name, PID: h.PID, Alive: doctor.Alive(h.PID)})
	}
	o.StrayDirs = f.d.vms.Orphans(ctx)
	if o.VMMs, err = f.VMMProcesses(f.d.layout.StateDir); err != nil {
		return o, fmt.Errorf("finding VMM processes: %w", err)
	}
	return o, nil
}
