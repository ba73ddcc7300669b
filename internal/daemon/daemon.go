// Package daemon is bangerd's composition root: it opens the store, loads
// the config, picks the VM driver, builds the services, reconciles with
// what is running, and serves the method table on the socket. It holds no
// domain logic of its own: methods.go maps each RPC method to a service
// call, and errors.go maps service errors to RPC error codes in one place.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/banger-dev/banger/internal/boot"
	"github.com/banger-dev/banger/internal/config"
	"github.com/banger-dev/banger/internal/guestssh"
	"github.com/banger-dev/banger/internal/host/dns"
	"github.com/banger-dev/banger/internal/host/hostnet"
	"github.com/banger-dev/banger/internal/host/kvmprobe"
	"github.com/banger-dev/banger/internal/host/run"
	"github.com/banger-dev/banger/internal/image"
	"github.com/banger-dev/banger/internal/op"
	"github.com/banger-dev/banger/internal/paths"
	"github.com/banger-dev/banger/internal/proc"
	"github.com/banger-dev/banger/internal/rpc"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/vm"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/vmm/firecracker"
	"github.com/banger-dev/banger/internal/vmm/qemu"
)

// Options say where the daemon lives and how it logs.
type Options struct {
	Socket   string
	StateDir string
	// ConfigPath is the config file; empty means <state-dir>/config.toml,
	// which may be absent. A path given explicitly must exist.
	ConfigPath string
	// Foreground also logs to Stderr.
	Foreground bool
	Stderr     io.Writer
	Version    string
}

// Daemon is a running bangerd.
type Daemon struct {
	opts Options
	// cfgMu guards cfg, whose live keys a reload replaces.
	cfgMu     sync.Mutex
	cfg       config.Config
	cfgPath   string
	cfgNeeded bool // the config file must exist (--config was given)
	level     *slog.LevelVar
	layout    paths.Layout
	log       *slog.Logger
	store     *store.Store
	ops       *op.Registry
	vms       *vm.Service
	images    *image.Service
	// catalogPath is the user's catalog file; catalogErr what was wrong
	// with it at start-up (the built-in catalog serves then).
	catalogPath string
	catalogErr  error
	boot        *boot.Host
	driver      vmm.Driver
	// driverReason says why this driver was chosen; kvm is the probe's
	// verdict behind it.
	driverReason string
	notRoot      bool
	kvm          kvmprobe.Verdict
	started      time.Time
	// shutdown asks Run to return; daemon.shutdown calls it. teardown
	// asks it to remove banger's host networking on the way out.
	shutdown context.CancelFunc
	// life ends when the daemon stops serving: what outlives a request
	// (a VM tied to its client's session) watches it.
	life      context.Context
	teardown  atomic.Bool
	netClosed sync.Once
	// groupID is the socket group's ID when that group exists.
	groupID  uint32
	hasGroup bool
	// hostnet is the host networking manager (doctor lists what it owns).
	hostnet *hostnet.Manager
}

// Run starts the daemon and serves until ctx ends or a caller asks it to
// shut down. Running VMs are left running.
func Run(ctx context.Context, opts Options) error {
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	// Nothing the daemon creates is for other users unless it says so.
	syscall.Umask(0o027)
	layout := paths.Layout{StateDir: opts.StateDir}
	if err := os.MkdirAll(layout.StateDir, 0o750); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	lock, err := lockStateDir(layout.StateDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	// Another daemon (with another state directory) on this socket owns the
	// host's VMs: decide that before touching anything on the host.
	if err := socketFree(opts.Socket); err != nil {
		return err
	}

	cfgPath, required := opts.ConfigPath, opts.ConfigPath != ""
	if !required {
		cfgPath = layout.Config()
	}
	cfg, err := config.Load(cfgPath, required)
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(layout.Log(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("opening log file: %w", err)
	}
	defer logFile.Close()
	level := new(slog.LevelVar)
	level.Set(cfg.LogLevel)
	hopts := &slog.HandlerOptions{Level: level}
	var handler slog.Handler = slog.NewTextHandler(logFile, hopts)
	if opts.Foreground {
		handler = slog.NewMultiHandler(handler, slog.NewTextHandler(opts.Stderr, hopts))
	}
	log := slog.New(handler)

	st, err := store.Open(ctx, layout.DB())
	if err != nil {
		return err
	}
	defer st.Close()
	interrupted, err := st.FailRunningOps(ctx, "interrupted: the daemon stopped while this operation ran")
	if err != nil {
		return err
	}
	var unfinished []string // VMs whose create was interrupted
	for _, o := range interrupted {
		log.Warn("operation interrupted by the previous daemon's exit", "op", o.ID, "kind", o.Kind, "target", o.Target)
		if o.Kind == vm.OpCreate {
			unfinished = append(unfinished, o.Target)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opsCtx, cancelOps := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelOps()
	ops := op.NewRegistry(opsCtx, st, log)
	agent := findAgent()
	kernel := ""
	if im, err := st.GetImage(ctx, cfg.DefaultImage); err == nil {
		kernel = im.KernelPath
	}
	drv := selectDriver(ctx, cfg, kernel, agent, filepath.Join(layout.StateDir, "kvm-probe.json"))
	driver, reason := drv.def, drv.reason
	d := &Daemon{
		opts: opts, cfg: cfg, cfgPath: cfgPath, cfgNeeded: required, level: level, layout: layout, log: log, store: st, ops: ops,
		driver: driver, driverReason: reason, notRoot: drv.notRoot, kvm: drv.kvm, started: time.Now(), shutdown: cancel, life: ctx,
	}
	d.groupID, d.hasGroup = config.GroupID(cfg.SocketGroup)

	signer, err := guestssh.LoadOrCreateKey(layout.SSHKey())
	if err != nil {
		return err
	}
	cacheDir := cfg.ImageCacheDir
	if cacheDir == "" {
		cacheDir = filepath.Join(layout.StateDir, "cache")
	}
	catalogPath := image.CatalogPath(cfgPath)
	catalog, catErr := image.LoadCatalog(catalogPath)
	if catErr != nil {
		// A broken catalog file must not keep VMs from being managed:
		// the built-in catalog serves, and doctor says what is wrong.
		log.Error("reading the image catalog; using the built-in one", "err", catErr)
		catalog = image.Builtin()
	}
	d.catalogPath, d.catalogErr = catalogPath, catErr
	d.images = image.NewService(image.ServiceConfig{
		Layout: layout, CacheDir: cacheDir, Mirror: cfg.DebianMirror, ExtraPackages: cfg.DebianPackages,
		AgentPath: agent,
	}, st, catalog, ops, log)
	// Work of pulls, imports and builds a previous daemon died in.
	d.images.Sweep()
	hcfg := hostnet.Config{Bridge: cfg.Bridge, Subnet: cfg.Subnet, IsolateVMs: cfg.IsolateVMs}
	if cfg.Jailer {
		// The jailed Firecracker runs as jailer_uid and must open its tap.
		hcfg.TapOwner = uint32(cfg.JailerUID)
	}
	hn := hostnet.New(hcfg, log)
	d.hostnet = hn
	netw := &network{Manager: hn, dns: dns.New(nil, log), life: ctx, log: log}
	d.boot = boot.New(boot.Config{
		Layout: layout, Subnet: cfg.Subnet, OverlayMiB: cfg.OverlayMiB, BootTimeout: cfg.BootTimeout,
	}, d.images, netw, netw.dns, signer, log)
	d.vms = vm.New(vm.Config{
		Layout: layout, Subnet: cfg.Subnet, DefaultImage: cfg.DefaultImage,
		DefaultVCPUs: cfg.DefaultVCPUs, DefaultMemoryMiB: cfg.DefaultMemoryMiB, DefaultDiskMiB: cfg.DefaultDiskMiB,
		HostMemoryMiB: hostMemoryMiB(), StopTimeout: cfg.StopTimeout, Drivers: drv.all,
	}, st, driver, d.boot, ops, catalog, log)
	if err := d.vms.Reconcile(ctx, unfinished); err != nil {
		return err
	}
	// Pool taps from a previous daemon that died are leaked otherwise; the
	// taps of VMs that still run are kept, and so is any tap a process
	// holds open (a VMM whose handles were never written).
	keep := d.vms.LiveTaps()
	for tap := range proc.TapsInUse() {
		keep = append(keep, tap)
	}
	if pruned, err := hn.PruneTaps(ctx, keep); err != nil {
		log.Warn("pruning stale taps", "err", err)
	} else if len(pruned) > 0 {
		log.Info("removed stale taps", "taps", pruned)
	}
	d.pruneNeighbors(ctx, st, hn)
	defer d.closeNetwork(context.WithoutCancel(ctx), hn)

	ln, err := d.listen()
	if err != nil {
		return err
	}
	log.Info("bangerd started", "version", opts.Version, "pid", os.Getpid(), "socket", opts.Socket,
		"state_dir", layout.StateDir, "driver", driver.Name(), "why", reason)

	go d.pruneLoop(ctx)
	go d.vms.Watch(ctx, 2*time.Second)
	go d.reloadOnHangup(ctx)
	srv := rpc.NewServer(d.methods(), d.authorize, mapError, log)
	serveErr := srv.Serve(ctx, ln)

	// Work in flight is cancelled (a create rolls back); VMs keep running.
	cancelOps()
	ops.Drain()
	// Host networking is settled before the socket goes, so a client that
	// waits for the socket to vanish sees the host as the daemon left it.
	d.closeNetwork(context.WithoutCancel(ctx), hn)
	_ = os.Remove(opts.Socket)
	log.Info("bangerd stopped")
	return serveErr
}

// config is the configuration in force.
func (d *Daemon) config() config.Config {
	d.cfgMu.Lock()
	defer d.cfgMu.Unlock()
	return d.cfg
}

// Reload reads the config file again and applies the keys a running
// daemon can take (defaults of new VMs, timeouts, logging); the others
// are reported as needing a restart and keep their running values. A file
// that does not parse or validate changes nothing.
func (d *Daemon) Reload() (config.Changes, error) {
	cur, err := config.Load(d.cfgPath, d.cfgNeeded)
	if err != nil {
		return config.Changes{}, err
	}
	d.cfgMu.Lock()
	defer d.cfgMu.Unlock()
	ch := config.Diff(d.cfg, cur)
	c := &d.cfg
	c.DefaultImage, c.DefaultVCPUs, c.DefaultMemoryMiB, c.DefaultDiskMiB = cur.DefaultImage, cur.DefaultVCPUs, cur.DefaultMemoryMiB, cur.DefaultDiskMiB
	c.StopTimeout, c.OpRetention, c.LogLevel = cur.StopTimeout, cur.OpRetention, cur.LogLevel
	d.vms.SetDefaults(vm.Defaults{Image: c.DefaultImage, VCPUs: c.DefaultVCPUs, MemoryMiB: c.DefaultMemoryMiB,
		DiskMiB: c.DefaultDiskMiB, StopTimeout: c.StopTimeout})
	d.level.Set(c.LogLevel)
	d.log.Info("configuration reloaded", "path", d.cfgPath, "applied", ch.Live, "need_restart", ch.Restart)
	return ch, nil
}

// reloadOnHangup reloads the configuration on SIGHUP, as daemons do.
func (d *Daemon) reloadOnHangup(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if _, err := d.Reload(); err != nil {
				d.log.Error("reloading the configuration on SIGHUP; the running one stays", "err", err)
			}
		}
	}
}

// pruneNeighbors removes the host's ARP pins for addresses no VM holds: a
// daemon that died between pinning a VM's address and recording its
// handles leaves one.
func (d *Daemon) pruneNeighbors(ctx context.Context, st *store.Store, hn *hostnet.Manager) {
	leased, err := st.LeasedIPs(ctx)
	if err != nil {
		d.log.Warn("pruning pinned guest addresses", "err", err)
		return
	}
	var keep []netip.Addr
	for _, s := range leased {
		if ip, err := netip.ParseAddr(s); err == nil {
			keep = append(keep, ip)
		}
	}
	if pruned, err := hn.PruneNeighbors(ctx, keep); err != nil {
		d.log.Warn("pruning pinned guest addresses", "err", err)
	} else if len(pruned) > 0 {
		d.log.Info("removed stale pinned guest addresses", "addrs", pruned)
	}
}

// closeNetwork runs once on the way out. Asked to leave nothing behind, and
// with still no VM holding a tap, it removes the bridge, taps and nftables
// table; otherwise only the unused pool taps go (VMs keep theirs, and the
// bridge and NAT stay for them).
func (d *Daemon) closeNetwork(ctx context.Context, hn *hostnet.Manager) {
	d.netClosed.Do(func() {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if d.teardown.Load() && len(d.vms.LiveTaps()) == 0 {
			if err := hn.Teardown(ctx); err != nil {
				d.log.Warn("removing host networking", "err", err)
				return
			}
			d.log.Info("removed banger's bridge, taps and nftables table")
			return
		}
		if err := hn.Close(ctx); err != nil {
			d.log.Warn("releasing pool taps", "err", err)
		}
	})
}

// lockStateDir takes an exclusive lock on the state directory so that two
// daemons never share one, even when started at the same moment.
func lockStateDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "bangerd.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening state lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another bangerd is already using state directory %s", dir)
		}
		return nil, fmt.Errorf("locking state directory: %w", err)
	}
	return f, nil
}

// socketFree fails when a daemon answers on path.
func socketFree(path string) error {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("another bangerd is already serving on %s", path)
	}
	return nil
}

// listen opens the socket: mode 0660, group-owned by the socket group when
// it exists. A stale socket file from a dead daemon is replaced.
func (d *Daemon) listen() (net.Listener, error) {
	path := d.opts.Socket
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating socket directory: %w", err)
		}
		// Group members must be able to reach the socket inside; the
		// daemon's umask would make the directory 0750.
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating socket directory: %w", err)
		}
	}
	// A directory someone else owns (say a pre-made /tmp/banger-UID) could
	// let them swap the socket: refuse it.
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("checking socket directory: %w", err)
	} else if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() && st.Uid != 0 {
		return nil, fmt.Errorf("socket directory %s belongs to uid %d, not to this user; remove it or choose another --socket", dir, st.Uid)
	}
	if err := socketFree(path); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale socket: %w", err)
	}
	// Create the socket with no access for others from the first instant.
	old := syscall.Umask(0o117)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("setting socket mode: %w", err)
	}
	if d.hasGroup {
		if err := os.Chown(path, -1, int(d.groupID)); err != nil {
			d.log.Warn("cannot give the socket to its group", "group", d.config().SocketGroup, "err", err)
		}
	}
	return ln, nil
}

func (d *Daemon) pruneLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if err := d.ops.Prune(ctx, d.config().OpRetention); err != nil && ctx.Err() == nil {
			d.log.Warn("pruning operations", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// drivers is the daemon's choice of VMM: the default for new VMs, every
// driver it can speak (a VM keeps the driver it was created with), and why.
type drivers struct {
	def    vmm.Driver
	all    []vmm.Driver
	reason string
	// notRoot says no driver runs because the daemon is not root.
	notRoot bool
	kvm     kvmprobe.Verdict
}

// selectDriver picks the default driver from config (or BANGER_VMM):
// "auto" takes Firecracker when its binary is found and KVM can really run
// a guest, else QEMU with KVM, else QEMU with TCG; "firecracker" and
// "qemu" insist. KVM is judged by kvmprobe (a real boot, cached), never by
// /dev/kvm existing.
func selectDriver(ctx context.Context, cfg config.Config, kernel, agent, probeCache string) drivers {
	want := cfg.VMM
	if env := os.Getenv("BANGER_VMM"); env != "" {
		want = env
	}
	fc := &firecracker.Driver{Binary: cfg.FirecrackerBinary}
	if cfg.Jailer {
		fc.Jailer = &firecracker.Jailer{Binary: cfg.JailerBinary, UID: cfg.JailerUID, GID: cfg.JailerGID, ChrootBase: cfg.JailerChrootBase}
	}
	if uid := os.Geteuid(); uid != 0 {
		reason := fmt.Sprintf("bangerd runs as uid %d, but booting VMs needs root for the bridge, taps and nftables; start the daemon as root (sudo banger daemon start); members of its socket group then reach it from their own accounts", uid)
		return drivers{def: vmm.None{Reason: reason}, all: []vmm.Driver{qemu.New("tcg"), fc}, reason: reason, notRoot: true}
	}
	verdict, _ := kvmprobe.Probe(ctx, kernel, agent, probeCache)
	accel, accelWhy := "tcg", "TCG, because "+verdict.Reason
	if verdict.Usable {
		accel, accelWhy = "kvm", "KVM ("+verdict.Reason+")"
	}
	q := qemu.New(accel)
	qErr := q.Available(ctx)
	fcErr := fc.Available(ctx)
	all := []vmm.Driver{q, fc}
	pick := func(d vmm.Driver, why string) drivers { return drivers{def: d, all: all, reason: why, kvm: verdict} }
	none := func(why string) drivers {
		return drivers{def: vmm.None{Reason: why}, all: all, reason: why, kvm: verdict}
	}

	switch want {
	case "firecracker":
		if fcErr != nil {
			return none(fcErr.Error())
		}
		if !verdict.Usable {
			return none("vmm = firecracker, but Firecracker needs a KVM that runs guests: " + verdict.Reason)
		}
		return pick(fc, "firecracker, as configured (vmm = firecracker); KVM runs guests here")
	case "qemu":
		if qErr != nil {
			return none(qErr.Error())
		}
		return pick(q, "qemu with "+accelWhy+", as configured (vmm = qemu)")
	}
	switch {
	case fcErr == nil && verdict.Usable:
		return pick(fc, "firecracker: found, and KVM runs guests here")
	case qErr == nil:
		why := "qemu with " + accelWhy
		if fcErr != nil {
			why += "; firecracker not found"
		}
		return pick(q, why)
	}
	return none("qemu-system-x86_64 not found; install it with `apt-get install qemu-system-x86` (or install firecracker on a host whose KVM runs guests)")
}

// findAgent locates banger-agent: beside the bangerd binary, else on PATH.
func findAgent() string {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "banger-agent")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := run.LookPath("banger-agent"); err == nil {
		return p
	}
	return "banger-agent"
}
