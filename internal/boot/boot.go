// Package boot is the host side of a VM's boot: fetching the image,
// making the initramfs, the disks and the config disk, taking a tap, and
// waiting until the guest's agent and SSH answer. It implements vm.Host;
// the VM service decides when each step runs.
package boot

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/agentctl"
	"github.com/banger-dev/banger/internal/guest"
	"github.com/banger-dev/banger/internal/guestssh"
	"github.com/banger-dev/banger/internal/host/disk"
	"github.com/banger-dev/banger/internal/host/portfwd"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/paths"
	"github.com/banger-dev/banger/internal/proc"
	"github.com/banger-dev/banger/internal/tunnel"
	"github.com/banger-dev/banger/internal/vmm"

	"github.com/banger-dev/banger/internal/atomicfile"
)

// Images resolves and prepares images.
type Images interface {
	// Ensure returns the named image, fetching or building it first when
	// it is not local but the catalog knows it.
	Ensure(ctx context.Context, name string, progress func(phase string)) (model.Image, error)
	// Content returns an image by content ID, named or not.
	Content(ctx context.Context, id string) (model.Image, error)
	// Initramfs returns banger's initramfs for the image's kernel.
	Initramfs(ctx context.Context, im model.Image) (string, error)
}

// Network provides host networking.
type Network interface {
	Ensure(ctx context.Context) error
	AcquireTap(ctx context.Context) (string, error)
	ReleaseTap(ctx context.Context, name string) error
	// PinNeighbor and UnpinNeighbor fix, and forget, the host's ARP
	// entry for a guest's address.
	PinNeighbor(ctx context.Context, ip netip.Addr, mac net.HardwareAddr) error
	UnpinNeighbor(ctx context.Context, ip netip.Addr, mac net.HardwareAddr) error
}

// DNS publishes names.
type DNS interface {
	Set(records map[string]netip.Addr)
}

// Config configures the boot.
type Config struct {
	Layout     paths.Layout
	Subnet     netip.Prefix
	OverlayMiB int64
	// BootTimeout bounds the wait for the agent and SSH.
	BootTimeout time.Duration
}

// Host is the real vm.Host.
type Host struct {
	cfg    Config
	images Images
	net    Network
	dns    DNS
	signer ssh.Signer
	log    *slog.Logger

	// fwdMu guards fwd (VM ID → its published ports' forwarders).
	fwdMu sync.Mutex
	fwd   map[string][]*portfwd.Forwarder
	// selfOnce computes selfSum, this daemon's build, for TemplateBuild.
	selfOnce sync.Once
	selfSum  string
	// tunMu guards tunnels (VM ID → the client of its agent's tunnel).
	tunMu   sync.Mutex
	tunnels map[string]*tunnel.Client
}

// New makes a Host. signer is the daemon's SSH key.
func New(cfg Config, images Images, network Network, dns DNS, signer ssh.Signer, log *slog.Logger) *Host {
	return &Host{cfg: cfg, images: images, net: network, dns: dns, signer: signer, log: log}
}

// Signer is the daemon's SSH key.
func (h *Host) Signer() ssh.Signer { return h.signer }

// Kernel command line shared by every VMM. Nothing secret goes here.
const cmdline = "console=ttyS0 net.ifnames=0 panic=-1 rdinit=/init quiet loglevel=4 systemd.show_status=false"

func (h *Host) file(vm model.VM, name string) string { return h.cfg.Layout.VMFile(vm.ID, name) }

// Created makes the VM's lasting files (overlay disk, work disk, SSH host
// key), fetching the image first when the VM is about to boot.
func (h *Host) Created(ctx context.Context, vm model.VM, fetchImage bool, progress func(string)) error {
	if fetchImage {
		progress("fetching image " + vm.Image)
		if _, err := h.images.Ensure(ctx, vm.Image, progress); err != nil {
			return err
		}
	}
	progress("creating disks")
	return h.ensureDisks(ctx, vm)
}

func (h *Host) ensureDisks(ctx context.Context, vm model.VM) error {
	if p := h.file(vm, "upper.ext4"); !disk.Exists(p) {
		if err := disk.CreateExt4(ctx, p, h.cfg.OverlayMiB, guest.LabelUpper); err != nil {
			return err
		}
	}
	if p := h.file(vm, "work.ext4"); !disk.Exists(p) {
		if err := disk.CreateExt4(ctx, p, vm.DiskMiB, guest.LabelWork); err != nil {
			return err
		}
	}
	if p := h.file(vm, "ssh_host_ed25519_key"); !disk.Exists(p) {
		priv, pub, err := guestssh.NewKeyPair("root@" + vm.Name)
		if err != nil {
			return err
		}
		// The private key goes last: its presence means the pair is whole.
		if err := atomicfile.WriteFile(p+".pub", []byte(pub+"\n"), 0o644); err != nil {
			return fmt.Errorf("writing host key: %w", err)
		}
		if err := atomicfile.WriteFile(p, []byte(priv), 0o600); err != nil {
			return fmt.Errorf("writing host key: %w", err)
		}
	}
	return nil
}

// HostKey is the VM's pinned SSH host public key.
func (h *Host) HostKey(vm model.VM) (string, error) {
	b, err := os.ReadFile(h.file(vm, "ssh_host_ed25519_key.pub"))
	if err != nil {
		return "", fmt.Errorf("reading vm host key: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// bootImage is the image content vm boots from, and its initramfs. A VM
// whose image was not local gets it now, and im.ID says which.
func (h *Host) bootImage(ctx context.Context, vm model.VM) (im model.Image, initrd string, err error) {
	if vm.ImageID != "" {
		im, err = h.images.Content(ctx, vm.ImageID)
	} else {
		im, err = h.images.Ensure(ctx, vm.Image, func(string) {})
	}
	if err != nil {
		return model.Image{}, "", err
	}
	initrd, err = h.images.Initramfs(ctx, im)
	return im, initrd, err
}

// templateFormat changes when what a template holds changes meaning.
const templateFormat = "1"

// TemplateBuild is the part of every template key that is this daemon's
// and no VM's: the template format and the daemon's own build (the VMM's
// device set). A template of another build is never matched again.
func (h *Host) TemplateBuild() string {
	h.selfOnce.Do(func() {
		if exe, err := os.Executable(); err == nil {
			h.selfSum, _, _ = disk.Sum(exe)
		}
	})
	return templateFormat + "-" + h.selfSum
}

// TemplateKey names the template a VM like vm can start from: a hash of
// everything a restored guest must share with the one saved, the image
// content, the initramfs (the agent's build in it), TemplateBuild, the
// driver, vCPUs, memory, the disks' sizes and the network mode. The VMM's
// own version is checked at restore.
func (h *Host) TemplateKey(ctx context.Context, vm model.VM) (string, error) {
	im, initrd, err := h.bootImage(ctx, vm)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{h.TemplateBuild(), im.ID, filepath.Base(initrd), vm.Driver,
		strconv.Itoa(vm.VCPUs), strconv.FormatInt(vm.MemoryMiB, 10), strconv.FormatInt(vm.DiskMiB, 10),
		strconv.FormatInt(h.cfg.OverlayMiB, 10), vm.NetworkMode()}, "\x00")))
	return hex.EncodeToString(sum[:12]), nil
}

// Prepare readies a boot and returns the VMM spec. The VM boots from
// the image content it was created from; one whose image was not local
// then gets it now, and the spec's VM says which (ImageID).
func (h *Host) Prepare(ctx context.Context, vm model.VM) (spec vmm.Spec, err error) {
	im, initrd, err := h.bootImage(ctx, vm)
	if err != nil {
		return vmm.Spec{}, err
	}
	vm.ImageID = im.ID
	if err := h.ensureDisks(ctx, vm); err != nil {
		return vmm.Spec{}, err
	}
	if err := h.writeConfigDisk(vm, im.Config); err != nil {
		return vmm.Spec{}, err
	}
	var tap string
	if vm.NetworkMode() != model.NetworkNone {
		if err := h.net.Ensure(ctx); err != nil {
			return vmm.Spec{}, fmt.Errorf("setting up host network: %w", err)
		}
		if tap, err = h.net.AcquireTap(ctx); err != nil {
			return vmm.Spec{}, fmt.Errorf("getting a tap device: %w", err)
		}
		if err := h.pin(ctx, vm); err != nil {
			_ = h.net.ReleaseTap(context.WithoutCancel(ctx), tap)
			return vmm.Spec{}, err
		}
	}
	mac := vm.MAC
	if tap == "" {
		mac = ""
	}
	spec = h.spec(vm, im, initrd,
		vmm.Disk{Path: h.file(vm, "upper.ext4")},
		vmm.Disk{Path: h.file(vm, "work.ext4")},
		vmm.Disk{Path: h.file(vm, "config.img"), ReadOnly: true})
	spec.Tap, spec.MAC = tap, mac
	return spec, nil
}

// spec is what every boot of vm shares: its image's kernel and
// initramfs, the image's root read-only, then disks, and the VM's
// console and agent sockets.
func (h *Host) spec(vm model.VM, im model.Image, initrd string, disks ...vmm.Disk) vmm.Spec {
	return vmm.Spec{
		VM: vm, Dir: h.cfg.Layout.VMDir(vm.ID),
		Kernel: im.KernelPath, Initrd: initrd, Cmdline: cmdline,
		Disks:         append([]vmm.Disk{{Path: im.RootfsPath, ReadOnly: true}}, disks...),
		ConsoleLog:    h.file(vm, "console.log"),
		ControlSocket: h.file(vm, "agent.sock"),
		TunnelSocket:  h.file(vm, "tunnel.sock"),
	}
}

// Maintenance readies a maintenance boot of a stopped vm (see
// guest.Config.Maintenance): its image and root disks, a config disk of
// its own that asks for maintenance, and no network device and no /work.
// The host reaches it through the tunnel only.
func (h *Host) Maintenance(ctx context.Context, vm model.VM) (vmm.Spec, error) {
	im, initrd, err := h.bootImage(ctx, vm)
	if err != nil {
		return vmm.Spec{}, err
	}
	upper := h.file(vm, "upper.ext4")
	if !disk.Exists(upper) {
		return vmm.Spec{}, model.Errorf(model.ErrState, "vm %s has no root disk (upper.ext4); it was never made whole: delete it and create it again", vm.Name)
	}
	img, err := guest.EncodeDisk(guest.Config{Hostname: vm.Name, Maintenance: true})
	if err != nil {
		return vmm.Spec{}, err
	}
	cfgDisk := h.file(vm, paths.MaintenanceConfig)
	if err := atomicfile.WriteFile(cfgDisk, img, 0o600); err != nil {
		return vmm.Spec{}, fmt.Errorf("writing maintenance config disk: %w", err)
	}
	vm.ImageID, vm.Network = im.ID, model.NetworkNone
	// The upper disk is writable at the VMM: the guest mounts it
	// read-only, and a journal left to replay is the guest kernel's to
	// replay.
	return h.spec(vm, im, initrd, vmm.Disk{Path: upper}, vmm.Disk{Path: cfgDisk, ReadOnly: true}), nil
}

// MaintenanceReady waits for a maintenance boot's agent to say it is
// ready: nothing else runs there.
func (h *Host) MaintenanceReady(ctx context.Context, vm model.VM, hd vmm.Handles) error {
	ctx, cancel := context.WithTimeout(ctx, min(agentReadyWait, h.cfg.BootTimeout))
	defer cancel()
	c, err := agentctl.Dial(ctx, agentctl.DialerFor(hd.ControlSocket, hd.ControlProto))
	if err != nil {
		return fmt.Errorf("vm %s: connecting to the agent of its maintenance boot: %w; console:\n%s", vm.Name, err, h.ConsoleTail(vm, 20))
	}
	defer c.Close()
	if _, err := c.WaitFor(ctx, guest.MsgReady); err != nil {
		return fmt.Errorf("vm %s: waiting for the agent of its maintenance boot: %w; console:\n%s", vm.Name, err, h.ConsoleTail(vm, 20))
	}
	return nil
}

func (h *Host) writeConfigDisk(vm model.VM, ic *model.ImageConfig) error {
	cfg, err := h.guestConfig(vm, ic)
	if err != nil {
		return err
	}
	img, err := guest.EncodeDisk(cfg)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(h.file(vm, "config.img"), img, 0o600); err != nil {
		return fmt.Errorf("writing config disk: %w", err)
	}
	return nil
}

// guestConfig is who vm is to its guest: the config disk of a cold boot,
// the identity of a restored one.
func (h *Host) guestConfig(vm model.VM, ic *model.ImageConfig) (guest.Config, error) {
	hostKey, err := os.ReadFile(h.file(vm, "ssh_host_ed25519_key"))
	if err != nil {
		return guest.Config{}, fmt.Errorf("reading vm host key: %w", err)
	}
	hostPub, err := h.HostKey(vm)
	if err != nil {
		return guest.Config{}, err
	}
	cfg := guest.Config{
		Hostname:       vm.Name,
		AuthorizedKeys: []string{guestssh.AuthorizedKey(h.signer)},
		HostKey:        string(hostKey),
		HostKeyPub:     hostPub,
	}
	if ic != nil {
		cfg.Image = &guest.ImageConfig{Env: ic.Env, Entrypoint: ic.Entrypoint, Cmd: ic.Cmd, WorkingDir: ic.WorkingDir, User: ic.User}
	}
	if vm.NetworkMode() != model.NetworkNone {
		gw := model.Gateway(h.cfg.Subnet)
		cfg.Address = vm.IP + "/" + strconv.Itoa(h.cfg.Subnet.Bits())
		cfg.Gateway, cfg.DNS, cfg.SearchDomain, cfg.MAC = gw.String(), []string{gw.String()}, "vm", vm.MAC
	}
	return cfg, nil
}

// identity is vm's guest.Identity: its config, a machine-id of its own
// (the same at every restore of this VM, another for every fork) and
// fresh entropy.
func (h *Host) identity(vm model.VM) (guest.Identity, error) {
	cfg, err := h.guestConfig(vm, nil)
	if err != nil {
		return guest.Identity{}, err
	}
	id := guest.Identity{Config: cfg, Entropy: make([]byte, 64)}
	if _, err := rand.Read(id.Entropy); err != nil {
		return guest.Identity{}, fmt.Errorf("reading entropy for the guest: %w", err)
	}
	sum := sha256.Sum256([]byte("banger machine-id\x00" + vm.ID))
	id.MachineID = hex.EncodeToString(sum[:16])
	return id, nil
}

// Ready waits for the agent's ready message, then for SSH, failing early
// (with the end of the console log) if the VMM process dies.
func (h *Host) Ready(ctx context.Context, vm model.VM, hd vmm.Handles) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.BootTimeout)
	defer cancel()
	died := make(chan struct{})
	go func() {
		for ctx.Err() == nil {
			if proc.Exited(hd.PID) {
				close(died)
				cancel()
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	fail := func(step string, err error) error {
		select {
		case <-died:
			return fmt.Errorf("vm %s: the VMM exited during boot (%s); console:\n%s", vm.Name, step, h.ConsoleTail(vm, 20))
		default:
		}
		return fmt.Errorf("vm %s: %s: %w; console:\n%s", vm.Name, step, err, h.ConsoleTail(vm, 20))
	}
	if hd.ControlSocket != "" {
		c, err := agentctl.Dial(ctx, agentctl.DialerFor(hd.ControlSocket, hd.ControlProto))
		if err != nil {
			return fail("connecting to the agent", err)
		}
		// A TCG guest now and then locks up early in its boot, before the
		// agent runs; its ready message comes within seconds otherwise.
		rctx, rcancel := context.WithTimeout(ctx, min(agentReadyWait, h.cfg.BootTimeout))
		_, err = c.WaitFor(rctx, guest.MsgReady)
		stalled := errors.Is(rctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
		rcancel()
		if err != nil {
			c.Close()
			if stalled {
				err = fmt.Errorf("%w: no word from the agent in %s", vmm.ErrGuestHung, agentReadyWait)
			}
			return fail("waiting for the guest agent", err)
		}
		// The guest read its clock from the RTC, whose seconds do not
		// even tick with the host's. A clock left wrong is logged, not a
		// failed boot.
		_, _ = h.syncClock(ctx, c, vm)
		// While sshd comes up the agent's heartbeats show the guest is
		// alive; a guest that locks up goes silent, and waiting out the
		// boot timeout would only delay booting it again.
		wctx, cancel := context.WithCancelCause(ctx)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			if err := c.Watch(wctx, guestSilence); errors.Is(err, agentctl.ErrSilent) {
				cancel(fmt.Errorf("%w: %w", vmm.ErrGuestHung, err))
			}
		}()
		err = guestssh.WaitBanner(wctx, "vm "+vm.Name, h.dialer(vm, hd, 22))
		hung := context.Cause(wctx)
		cancel(nil)
		<-watched
		c.Close()
		if err != nil {
			if errors.Is(hung, vmm.ErrGuestHung) {
				err = hung
			}
			return fail("waiting for ssh", err)
		}
	} else if err := guestssh.WaitBanner(ctx, "vm "+vm.Name, h.dialer(vm, hd, 22)); err != nil {
		return fail("waiting for ssh", err)
	}
	return h.publish(vm, hd)
}

// Resumed readies a guest that a restore or a fork started from saved
// memory. Its agent sent its ready message long ago (one session lasts
// the guest's life); the identity exchange is what shows it answers, and
// makes the guest vm (a fork is still the VM it was copied from until
// then; a restored VM gets a freshly seeded RNG); the agent answers once
// SSH listens again, so no SSH connection of the host's costs the guest
// an sshd (a cold boot's first one proved the way there). A clock
// exchange brings the guest's clock, behind by the time since the save,
// to the host's. Then the published ports.
func (h *Host) Resumed(ctx context.Context, vm model.VM, hd vmm.Handles) error {
	ctx, cancel := context.WithTimeout(ctx, min(agentReadyWait, h.cfg.BootTimeout))
	defer cancel()
	id, err := h.identity(vm)
	if err != nil {
		return err
	}
	start := time.Now()
	c, err := agentctl.Dial(ctx, agentctl.DialerFor(hd.ControlSocket, hd.ControlProto))
	if err != nil {
		return fmt.Errorf("vm %s: connecting to the agent after the restore: %w", vm.Name, err)
	}
	err = c.Identify(ctx, id)
	identified := time.Since(start)
	if err == nil {
		_, err = h.syncClock(ctx, c, vm)
	}
	c.Close()
	h.log.Debug("restored guest identified", "vm", vm.Name, "identify", identified.Round(time.Millisecond),
		"clock", (time.Since(start) - identified).Round(time.Millisecond))
	if err != nil {
		return fmt.Errorf("vm %s: the agent does not answer after the restore: %w; console:\n%s", vm.Name, err, h.ConsoleTail(vm, 20))
	}
	return h.publish(vm, hd)
}

// agentReadyWait is how long a boot waits for the agent's ready message
// before it counts the guest as hung (a boot reaches it in seconds, also
// under TCG with a busy host).
const agentReadyWait = 60 * time.Second

// guestSilence is how long a booting guest's agent may say nothing (it
// sends a heartbeat every 5 s) before the guest counts as hung.
const guestSilence = 40 * time.Second

// Adopted resumes what a running VM needs from the host when a new daemon
// takes it over: the host network as configured now (its DNS server,
// isolate_vms on its tap) and its published ports.
func (h *Host) Adopted(ctx context.Context, vm model.VM, hd vmm.Handles) {
	if vm.NetworkMode() != model.NetworkNone {
		if err := h.net.Ensure(ctx); err != nil {
			h.log.Warn("setting up host network for a running vm", "vm", vm.Name, "err", err)
		}
	}
	if err := h.publish(vm, hd); err != nil {
		h.log.Warn("publishing ports of a running vm", "vm", vm.Name, "err", err)
	}
}

// publish forwards each of the VM's published ports from the host's
// loopback to the guest: all of them, or none and an error.
func (h *Host) publish(vm model.VM, hd vmm.Handles) error {
	h.unpublish(vm.ID)
	var fs []*portfwd.Forwarder
	for _, p := range vm.Publish {
		listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Host))
		target := fmt.Sprintf("vm %s port %d", vm.Name, p.Guest)
		f, err := portfwd.Listen(listen, target, portfwd.Dialer(h.dialer(vm, hd, p.Guest)), h.log)
		if err != nil {
			for _, f := range fs {
				f.Close()
			}
			return fmt.Errorf("vm %s: %w; free that port or publish another", vm.Name, err)
		}
		fs = append(fs, f)
	}
	if len(fs) > 0 {
		h.fwdMu.Lock()
		if h.fwd == nil {
			h.fwd = map[string][]*portfwd.Forwarder{}
		}
		h.fwd[vm.ID] = fs
		h.fwdMu.Unlock()
	}
	return nil
}

func (h *Host) unpublish(id string) {
	h.fwdMu.Lock()
	fs := h.fwd[id]
	delete(h.fwd, id)
	h.fwdMu.Unlock()
	for _, f := range fs {
		f.Close()
	}
}

// clockTimeout bounds one clock exchange: an agent too old to know the
// protocol never answers, and a stop waits for the channel meanwhile.
const clockTimeout = 3 * time.Second

// SyncClock sets the running guest's clock to the host's: a step when it
// is far off, a slew otherwise. The daemon calls it every few seconds.
func (h *Host) SyncClock(ctx context.Context, vm model.VM, hd vmm.Handles) error {
	if hd.ControlSocket == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, clockTimeout)
	defer cancel()
	c, err := agentctl.Dial(ctx, agentctl.DialerFor(hd.ControlSocket, hd.ControlProto))
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = h.syncClock(ctx, c, vm)
	return err
}

// syncClock runs one clock exchange on c and logs a step (a large error:
// boot, a restored snapshot, a guest that changed its own clock).
func (h *Host) syncClock(ctx context.Context, c *agentctl.Conn, vm model.VM) (agentctl.ClockSync, error) {
	ctx, cancel := context.WithTimeout(ctx, clockTimeout)
	defer cancel()
	cs, err := c.SyncClock(ctx)
	switch {
	case err != nil:
		h.log.Warn("setting the guest's clock", "vm", vm.Name, "err", err)
	case cs.How == guest.ClockStepped:
		h.log.Info("stepped the guest's clock", "vm", vm.Name, "offset", cs.Offset, "rtt", cs.RTT)
	default:
		h.log.Debug("slewed the guest's clock", "vm", vm.Name, "offset", cs.Offset, "rtt", cs.RTT)
	}
	return cs, err
}

// DialGuest connects to a TCP port of a running guest: to its IP on
// banger's bridge, or through the agent's tunnel when it has no network.
func (h *Host) DialGuest(ctx context.Context, vm model.VM, hd vmm.Handles, port int) (net.Conn, error) {
	return h.dialer(vm, hd, port)(ctx)
}

func (h *Host) dialer(vm model.VM, hd vmm.Handles, port int) guestssh.Dialer {
	if vm.NetworkMode() != model.NetworkNone {
		return guestssh.TCP(net.JoinHostPort(vm.IP, strconv.Itoa(port)))
	}
	return func(ctx context.Context) (net.Conn, error) {
		t, err := h.tunnel(vm, hd)
		if err != nil {
			return nil, err
		}
		return t.Dial(ctx, port)
	}
}

// ErrNoTunnel is a VM without a network whose VMM exposes no tunnel.
var ErrNoTunnel = errors.New("the vm has no network and its vmm exposes no tunnel to it")

// tunnel returns the VM's tunnel client, making it on first use.
func (h *Host) tunnel(vm model.VM, hd vmm.Handles) (*tunnel.Client, error) {
	if hd.TunnelSocket == "" {
		return nil, fmt.Errorf("vm %s: %w", vm.Name, ErrNoTunnel)
	}
	h.tunMu.Lock()
	defer h.tunMu.Unlock()
	if t := h.tunnels[vm.ID]; t != nil {
		return t, nil
	}
	if h.tunnels == nil {
		h.tunnels = map[string]*tunnel.Client{}
	}
	t := tunnel.NewClient(agentctl.TunnelDialerFor(hd.TunnelSocket, hd.ControlProto))
	h.tunnels[vm.ID] = t
	return t, nil
}

func (h *Host) closeTunnel(id string) {
	h.tunMu.Lock()
	t := h.tunnels[id]
	delete(h.tunnels, id)
	h.tunMu.Unlock()
	if t != nil {
		t.Close()
	}
}

// Release gives back the VM's tap, stops forwarding its ports and closes
// its tunnel.
func (h *Host) Release(ctx context.Context, vm model.VM, hd vmm.Handles) error {
	h.unpublish(vm.ID)
	h.closeTunnel(vm.ID)
	if hd.Tap == "" {
		return nil
	}
	return errors.Join(h.net.ReleaseTap(ctx, hd.Tap), h.unpin(ctx, vm))
}

// pin fixes the host's ARP entry for the VM's address at its MAC (see
// hostnet.Manager.PinNeighbor for why).
func (h *Host) pin(ctx context.Context, vm model.VM) error {
	ip, mac, err := neighbor(vm)
	if err != nil {
		return err
	}
	return h.net.PinNeighbor(ctx, ip, mac)
}

func (h *Host) unpin(ctx context.Context, vm model.VM) error {
	ip, mac, err := neighbor(vm)
	if err != nil {
		return err
	}
	return h.net.UnpinNeighbor(ctx, ip, mac)
}

// neighbor is the VM's address and MAC, as the host's ARP entry has them.
func neighbor(vm model.VM) (netip.Addr, net.HardwareAddr, error) {
	ip, err := netip.ParseAddr(vm.IP)
	if err != nil {
		return netip.Addr{}, nil, fmt.Errorf("vm %s: address %q: %w", vm.Name, vm.IP, err)
	}
	mac, err := net.ParseMAC(vm.MAC)
	if err != nil {
		return netip.Addr{}, nil, fmt.Errorf("vm %s: MAC %q: %w", vm.Name, vm.MAC, err)
	}
	return ip, mac, nil
}

// Records publishes every VM's name for DNS.
func (h *Host) Records(_ context.Context, vms []model.VM) {
	recs := make(map[string]netip.Addr, len(vms))
	for _, v := range vms {
		if a, err := netip.ParseAddr(v.IP); err == nil {
			recs[v.Name] = a
		}
	}
	h.dns.Set(recs)
}

// ConsoleTail returns the last n lines of the VM's console log.
func (h *Host) ConsoleTail(vm model.VM, n int) string {
	b, err := os.ReadFile(h.file(vm, "console.log"))
	if err != nil {
		return "(no console output)"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
