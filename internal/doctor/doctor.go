// Package doctor checks whether this host can run banger's VMs and what
// banger owns on it: KVM (by a probe boot, never by /dev/kvm existing), the
// VMM binaries, the system tools, kernel features, the daemon socket's
// permissions, free disk, the default image, and the bridge, taps, nftables
// table and VMM processes banger left on the host. Every problem comes with
// a one-line fix.
//
// The checks only read: nothing here changes the host. What they look at
// comes through Facts, which the daemon implements from its own state and
// System (the host side); tests supply a fake.
package doctor

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strings"
)

// Status is a check's outcome.
type Status string

// Statuses, from good to bad.
const (
	OK   Status = "OK"
	Warn Status = "WARN"
	Fail Status = "FAIL"
)

// Check is one check's outcome. Fix says in one line what to do; it is
// empty when Status is OK.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// KVM is the KVM probe's verdict (see internal/host/kvmprobe).
type KVM struct {
	Usable bool
	// Cause classifies an unusable KVM: "no-device", "no-access",
	// "incompatible", "boot-failed" or "not-probed".
	Cause  string
	Reason string
}

// Binary is a program found (or not) on PATH.
type Binary struct {
	Path    string // "" when not found
	Version string // first line of its version output, when asked and known
	Err     error  // why the version could not be read
}

// Network says whether banger can read the host's network configuration
// through netlink and nftables (without changing anything).
type Network struct {
	LinksErr error // listing links over netlink failed
	NFTErr   error // listing nftables tables failed
}

// Socket describes the daemon's socket.
type Socket struct {
	Path string
	Mode fs.FileMode // permission bits
	GID  uint32      // the socket file's group
	// Group is the configured socket group; GroupExists says whether the
	// host has it, with GroupGID its ID.
	Group       string
	GroupExists bool
	GroupGID    uint32
	Err         error // the socket could not be inspected
}

// Image describes the default image.
type Image struct {
	Name      string
	Local     bool // registered in the daemon's store
	InCatalog bool // the catalog can fetch or build it
	Buildable bool // the tools to build it are installed (mmdebstrap)
}

// VMProcess is a VM the daemon records as running and its VMM process.
type VMProcess struct {
	Name  string
	PID   int
	Alive bool
}

// Process is a VMM process found on the host.
type Process struct {
	PID     int
	Cmdline string
}

// Owned is what banger has on the host, and the VMs it records.
type Owned struct {
	Bridge  string // "" when absent
	NFTable string // "" when absent
	// Taps are every banger tap on the host; HeldTaps those running VMs
	// hold. The daemon keeps up to PoolSize unheld taps ready for boots.
	Taps     []string
	HeldTaps []string
	PoolSize int
	// Running are the VMs recorded as running (or starting, stopping).
	Running []VMProcess
	// VMMs are VMM processes whose command line points into the state
	// directory.
	VMMs []Process
	// StrayDirs are entries of the VMs directory that no VM record owns
	// (start-up removes them; these it could not).
	StrayDirs []string
}

// Facts is everything the checks look at.
type Facts interface {
	// Driver is the VMM driver the daemon chose ("none" if none) and why;
	// notRoot says none runs because the daemon is not root.
	Driver() (name, reason string, notRoot bool)
	// KVM probes (or recalls) whether KVM can run guests.
	KVM(ctx context.Context) KVM
	// Binary finds a program on PATH and, when versionArgs are given, runs
	// it with them to read its version.
	Binary(ctx context.Context, name string, versionArgs ...string) Binary
	// Tun returns nil when /dev/net/tun is a character device.
	Tun() error
	// Network tries listing links and nftables tables.
	Network(ctx context.Context) Network
	// Filesystems are the host kernel's filesystems (/proc/filesystems).
	Filesystems() ([]string, error)
	Socket() Socket
	StateDir() string
	// FreeBytes is the space available to the daemon in dir.
	FreeBytes(dir string) (uint64, error)
	DefaultImage(ctx context.Context) (Image, error)
	// Catalog is the user's catalog file, how many entries it gives, and
	// what is wrong with it (nil when it is fine or absent).
	Catalog() (path string, entries int, err error)
	Owned(ctx context.Context) (Owned, error)
	// Saved is what snapshots and instant-VM templates take on disk.
	Saved(ctx context.Context) (Saved, error)
	// Jailer is the daemon's jailer configuration and where its jails go.
	Jailer() Jailer
}

// Jailer is the jailer as configured (jailer = true in the daemon's
// config) and whether its jails can take the VMs' files: they are hard
// links and renames from the state directory, so the chroot base must be
// on its filesystem.
type Jailer struct {
	On         bool
	ChrootBase string
	// SameFilesystem: the chroot base (or its nearest existing parent) is
	// on the state directory's filesystem. Err says why that is unknown.
	SameFilesystem bool
	Err            error
}

// Saved counts snapshots and templates and their bytes on disk.
type Saved struct {
	Snapshots, Templates         int
	SnapshotBytes, TemplateBytes int64
}

// Names of the checks, as they appear in the output.
const (
	NameDriver       = "VM driver"
	NameKVM          = "KVM"
	NameFirecracker  = "firecracker"
	NameQEMU         = "qemu-system-x86_64"
	NameMmdebstrap   = "mmdebstrap"
	NameMkfs         = "mkfs.ext4 (e2fsprogs)"
	NameTun          = "/dev/net/tun"
	NameNetwork      = "netlink + nftables"
	NameOverlay      = "overlay filesystem"
	NameSocket       = "socket"
	NameDisk         = "disk space"
	NameDefaultImage = "default image"
	NameCatalog      = "image catalog"
	NameHost         = "banger on the host"
	NameOrphans      = "orphans"
	NameSaved        = "snapshots and templates"
	NameJailer       = "jailer"
)

// Fixes that more than one check gives.
const (
	FixQEMU        = "apt-get install qemu-system-x86"
	FixFirecracker = "download a release from github.com/firecracker-microvm/firecracker/releases and put firecracker (and jailer) on PATH"
	FixMmdebstrap  = "apt-get install mmdebstrap"
	FixOrphans     = "`banger vm delete --force NAME` for VMs you no longer want; kill the listed processes, remove the listed directories and delete unheld taps by hand (a future `banger doctor --clean` will)"
)

// Disk thresholds for the state directory.
const (
	DiskWarnBytes = 5 << 30
	DiskFailBytes = 1 << 30
)

// Run runs every check, in a fixed order.
func Run(ctx context.Context, f Facts) []Check {
	c := &checker{f: f}
	c.driver()
	kvm := c.kvm(ctx)
	fc := c.firecracker(ctx, kvm)
	c.qemu(ctx, fc && kvm.Usable)
	c.jailer(ctx)
	c.tools(ctx)
	c.tun()
	c.network(ctx)
	c.overlay()
	c.socket()
	c.disk()
	c.saved(ctx)
	c.defaultImage(ctx)
	c.catalog()
	c.owned(ctx)
	return c.out
}

// Failed reports whether any check failed.
func Failed(checks []Check) bool {
	return slices.ContainsFunc(checks, func(c Check) bool { return c.Status == Fail })
}

type checker struct {
	f   Facts
	out []Check
	// mmdebstrap caches the lookup two checks need.
	mmdebstrap *Binary
}

func (c *checker) add(name string, s Status, detail, fix string) {
	if s == OK {
		fix = ""
	}
	c.out = append(c.out, Check{Name: name, Status: s, Detail: detail, Fix: fix})
}

func (c *checker) driver() {
	name, reason, notRoot := c.f.Driver()
	if name != "none" && name != "" {
		c.add(NameDriver, OK, name+": "+reason, "")
		return
	}
	fix := "install a VMM: " + FixQEMU + " (or Firecracker on a host with working KVM)"
	if notRoot {
		fix = "run the daemon as root: banger daemon stop; sudo banger daemon start"
	}
	c.add(NameDriver, Fail, "no VM driver can run guests: "+reason, fix)
}

func (c *checker) kvm(ctx context.Context) KVM {
	v := c.f.KVM(ctx)
	if v.Usable {
		c.add(NameKVM, OK, "KVM runs guests: "+v.Reason, "")
		return v
	}
	detail := v.Reason
	if name, _, _ := c.f.Driver(); name == "qemu" {
		detail += "; using QEMU with TCG"
	}
	var fix string
	switch v.Cause {
	case "no-device":
		fix = "enable virtualization (VT-x/AMD-V) in the firmware and load kvm_intel or kvm_amd; meanwhile guests run under TCG, slower"
	case "no-access":
		fix = "run the daemon as root (sudo banger daemon start) so it can open /dev/kvm"
	case "incompatible":
		fix = "nothing to do here: guests run under TCG; for KVM speed use a host with standard KVM (kvm_intel/kvm_amd)"
	case "boot-failed":
		fix = "look at the host's KVM (dmesg, nested virtualization settings); guests run under TCG meanwhile"
	default:
		fix = "pull the default image so the probe has a kernel to boot (banger image pull), and install " + NameQEMU
	}
	c.add(NameKVM, Warn, detail, fix)
	return v
}

// firecracker reports whether a working firecracker binary is installed.
func (c *checker) firecracker(ctx context.Context, kvm KVM) bool {
	b := c.f.Binary(ctx, "firecracker", "--version")
	if b.Path == "" {
		c.add(NameFirecracker, Warn, "not installed; banger uses QEMU instead", FixFirecracker)
		return false
	}
	if b.Err != nil {
		c.add(NameFirecracker, Warn, fmt.Sprintf("%s does not run: %v", b.Path, b.Err), "reinstall it: "+FixFirecracker)
		return false
	}
	detail := fmt.Sprintf("%s (%s)", b.Version, b.Path)
	if j := c.f.Binary(ctx, "jailer"); j.Path != "" {
		detail += "; jailer at " + j.Path
	} else {
		detail += "; no jailer"
	}
	if !kvm.Usable {
		c.add(NameFirecracker, Warn, detail+"; unused, because KVM cannot run guests here", "make KVM usable (see the KVM check); Firecracker needs it")
		return true
	}
	c.add(NameFirecracker, OK, detail, "")
	return true
}

// jailer checks a configured jailer: its binary, and that its jails are
// on the state directory's filesystem (else every jailed boot fails
// linking the VM's files in). Without jailer = true there is no check.
func (c *checker) jailer(ctx context.Context) {
	j := c.f.Jailer()
	if !j.On {
		return
	}
	b := c.f.Binary(ctx, "jailer")
	switch {
	case b.Path == "":
		c.add(NameJailer, Fail, "jailer = true, but no jailer is on PATH: Firecracker VMs cannot start", FixFirecracker+"; or set jailer = false")
	case j.Err != nil:
		c.add(NameJailer, Warn, fmt.Sprintf("%s; cannot tell where jails go: %v", b.Path, j.Err), "check jailer_chroot_base ("+j.ChrootBase+")")
	case !j.SameFilesystem:
		c.add(NameJailer, Fail, fmt.Sprintf("%s; jailer_chroot_base %s is on another filesystem than the state directory %s, and the VMs' files are hard-linked into their jails", b.Path, j.ChrootBase, c.f.StateDir()),
			"set jailer_chroot_base to a directory on the state directory's filesystem (e.g. "+c.f.StateDir()+"/jail)")
	default:
		c.add(NameJailer, OK, fmt.Sprintf("%s; jails in %s, on the state directory's filesystem", b.Path, j.ChrootBase), "")
	}
}

// qemu checks QEMU; its absence fails unless another driver works.
func (c *checker) qemu(ctx context.Context, otherDriver bool) {
	b := c.f.Binary(ctx, NameQEMU, "--version")
	switch {
	case b.Path == "" && otherDriver:
		c.add(NameQEMU, Warn, "not installed; Firecracker runs guests, but hosts without KVM need QEMU", FixQEMU)
	case b.Path == "":
		c.add(NameQEMU, Fail, "not installed, and no other VMM can run guests here", FixQEMU)
	case b.Err != nil:
		c.add(NameQEMU, Fail, fmt.Sprintf("%s does not run: %v", b.Path, b.Err), "reinstall it: "+FixQEMU)
	default:
		c.add(NameQEMU, OK, fmt.Sprintf("%s (%s)", b.Version, b.Path), "")
	}
}

func (c *checker) mmdebstrapBinary(ctx context.Context) Binary {
	if c.mmdebstrap == nil {
		b := c.f.Binary(ctx, "mmdebstrap", "--version")
		c.mmdebstrap = &b
	}
	return *c.mmdebstrap
}

func (c *checker) tools(ctx context.Context) {
	if b := c.mmdebstrapBinary(ctx); b.Path == "" {
		c.add(NameMmdebstrap, Warn, "not installed: the debian-12 image cannot be built here", FixMmdebstrap)
	} else {
		c.add(NameMmdebstrap, OK, strings.TrimSpace(b.Version+" ("+b.Path+")"), "")
	}
	if b := c.f.Binary(ctx, "mkfs.ext4"); b.Path == "" {
		c.add(NameMkfs, Fail, "not installed: banger makes every VM's disks with it", "apt-get install e2fsprogs")
	} else {
		c.add(NameMkfs, OK, b.Path, "")
	}
}

func (c *checker) tun() {
	if err := c.f.Tun(); err != nil {
		c.add(NameTun, Fail, "VMs get no network: "+err.Error(), "modprobe tun (and make it load at boot: echo tun >> /etc/modules)")
		return
	}
	c.add(NameTun, OK, "present", "")
}

func (c *checker) network(ctx context.Context) {
	n := c.f.Network(ctx)
	switch {
	case n.LinksErr != nil:
		c.add(NameNetwork, Fail, "cannot list links over netlink: "+n.LinksErr.Error(), "run the daemon as root (sudo banger daemon start); it needs CAP_NET_ADMIN")
	case n.NFTErr != nil:
		c.add(NameNetwork, Fail, "cannot list nftables tables: "+n.NFTErr.Error(), "load nftables (modprobe nf_tables) and run the daemon as root; banger NATs guests in its own table")
	default:
		c.add(NameNetwork, OK, "links and nftables tables can be listed", "")
	}
}

func (c *checker) overlay() {
	fss, err := c.f.Filesystems()
	switch {
	case err != nil:
		c.add(NameOverlay, Warn, "cannot read the host's filesystems: "+err.Error()+"; guests load overlay from their own kernel", "check that /proc is mounted")
	case slices.Contains(fss, "overlay"):
		c.add(NameOverlay, OK, "the host kernel has overlay (guests load their own kernel's module)", "")
	default:
		c.add(NameOverlay, Warn, "the host kernel lists no overlay filesystem; guests use their own kernel's overlay module, so VMs still work", "modprobe overlay")
	}
}

func (c *checker) socket() {
	s := c.f.Socket()
	switch {
	case s.Err != nil:
		c.add(NameSocket, Fail, fmt.Sprintf("cannot inspect %s: %v", s.Path, s.Err), "restart the daemon: banger daemon stop; banger daemon start")
	case s.Mode != 0o660:
		c.add(NameSocket, Fail, fmt.Sprintf("%s has mode %04o, want 0660", s.Path, s.Mode), "restart the daemon (banger daemon stop; banger daemon start); it sets mode 0660")
	case s.Group == "":
		c.add(NameSocket, OK, s.Path+", mode 0660; no socket_group configured, so only root and the daemon's user may use it", "")
	case !s.GroupExists:
		c.add(NameSocket, Warn, fmt.Sprintf("%s is mode 0660, but group %q does not exist: only root and the daemon's user can use banger", s.Path, s.Group),
			fmt.Sprintf("groupadd %s && usermod -aG %s $USER, then restart the daemon and log in again", s.Group, s.Group))
	case s.GID != s.GroupGID:
		c.add(NameSocket, Warn, fmt.Sprintf("%s belongs to gid %d, not to group %q (gid %d)", s.Path, s.GID, s.Group, s.GroupGID),
			"restart the daemon (banger daemon stop; banger daemon start) so it gives the socket to its group")
	default:
		c.add(NameSocket, OK, fmt.Sprintf("%s, mode 0660, group %s", s.Path, s.Group), "")
	}
}

func (c *checker) disk() {
	dir := c.f.StateDir()
	free, err := c.f.FreeBytes(dir)
	fix := "free space on that filesystem (banger image delete, banger vm delete), or move the state directory"
	switch {
	case err != nil:
		c.add(NameDisk, Warn, fmt.Sprintf("cannot measure free space in %s: %v", dir, err), "check that the state directory exists and is readable")
	case free < DiskFailBytes:
		c.add(NameDisk, Fail, fmt.Sprintf("%s free in %s; VMs and images need at least 1 GiB", gib(free), dir), fix)
	case free < DiskWarnBytes:
		c.add(NameDisk, Warn, fmt.Sprintf("%s free in %s; an image and a few VMs need about 5 GiB", gib(free), dir), fix)
	default:
		c.add(NameDisk, OK, fmt.Sprintf("%s free in %s", gib(free), dir), "")
	}
}

// saved says what snapshots and templates take: never a failure, but
// the first place to look when the state directory fills.
func (c *checker) saved(ctx context.Context) {
	u, err := c.f.Saved(ctx)
	if err != nil {
		c.add(NameSaved, Warn, "cannot count them: "+err.Error(), "look at the daemon log (bangerd.log in the state directory)")
		return
	}
	c.add(NameSaved, OK, fmt.Sprintf("%d snapshots take %s; %d templates for instant VMs take %s",
		u.Snapshots, gib(uint64(u.SnapshotBytes)), u.Templates, gib(uint64(u.TemplateBytes))), "")
}

func gib(n uint64) string { return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30)) }

func (c *checker) defaultImage(ctx context.Context) {
	im, err := c.f.DefaultImage(ctx)
	switch {
	case err != nil:
		c.add(NameDefaultImage, Fail, "cannot look up the default image: "+err.Error(), "look at the daemon log (bangerd.log in the state directory)")
	case im.Local:
		c.add(NameDefaultImage, OK, im.Name+" is local", "")
	case im.InCatalog && im.Buildable:
		c.add(NameDefaultImage, Warn, im.Name+" will be built on first use (~35 s)", "build it now: banger image pull "+im.Name)
	case im.InCatalog:
		c.add(NameDefaultImage, Fail, im.Name+" is in the catalog but cannot be built here: mmdebstrap is missing", FixMmdebstrap)
	default:
		c.add(NameDefaultImage, Fail, im.Name+" is neither local nor in the catalog",
			"set default_image in the config to a local image (banger image list) or a catalog name")
	}
}

func (c *checker) catalog() {
	path, n, err := c.f.Catalog()
	switch {
	case err != nil:
		c.add(NameCatalog, Fail, "the catalog file is not in use: "+err.Error(), "fix "+path+" (see `banger image catalog --help`) and restart the daemon")
	case n == 0:
		c.add(NameCatalog, OK, "built in only ("+path+" adds entries)", "")
	default:
		c.add(NameCatalog, OK, fmt.Sprintf("%d entries from %s", n, path), "")
	}
}

func (c *checker) owned(ctx context.Context) {
	o, err := c.f.Owned(ctx)
	if err != nil {
		c.add(NameHost, Warn, "cannot list what banger owns on the host: "+err.Error(), "run the daemon as root (sudo banger daemon start)")
		return
	}
	var parts []string
	if o.Bridge != "" {
		parts = append(parts, "bridge "+o.Bridge)
	} else {
		parts = append(parts, "no bridge yet")
	}
	if o.NFTable != "" {
		parts = append(parts, "nftables table "+o.NFTable)
	} else {
		parts = append(parts, "no nftables table yet")
	}
	var unheld []string
	for _, t := range o.Taps {
		if !slices.Contains(o.HeldTaps, t) {
			unheld = append(unheld, t)
		}
	}
	pooled := min(len(unheld), o.PoolSize)
	parts = append(parts, fmt.Sprintf("%d tap(s): %d held by VMs, %d ready in the pool", len(o.Taps), len(o.Taps)-len(unheld), pooled))
	alive := 0
	for _, v := range o.Running {
		if v.Alive {
			alive++
		}
	}
	parts = append(parts, fmt.Sprintf("%d running VM process(es)", alive))
	c.add(NameHost, OK, strings.Join(parts, ", "), "")

	// Orphans: VMM processes no running VM records, taps beyond the pool
	// that no VM holds, VMs recorded running whose process is gone.
	recorded := map[int]bool{}
	var problems []string
	for _, v := range o.Running {
		recorded[v.PID] = true
		if !v.Alive {
			problems = append(problems, fmt.Sprintf("VM %s is recorded as running but its process %d is gone", v.Name, v.PID))
		}
	}
	for _, p := range o.VMMs {
		if !recorded[p.PID] {
			problems = append(problems, fmt.Sprintf("VMM process %d belongs to no running VM (%s)", p.PID, shorten(p.Cmdline, 120)))
		}
	}
	if len(o.StrayDirs) > 0 {
		problems = append(problems, fmt.Sprintf("vm directories no VM owns: %s", strings.Join(o.StrayDirs, ", ")))
	}
	if extra := unheld[pooled:]; len(extra) > 0 {
		problems = append(problems, fmt.Sprintf("tap(s) %s held by no VM (the pool keeps %d)", strings.Join(extra, ", "), o.PoolSize))
	}
	if len(problems) == 0 {
		c.add(NameOrphans, OK, "none", "")
		return
	}
	c.add(NameOrphans, Warn, strings.Join(problems, "; "), FixOrphans)
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
