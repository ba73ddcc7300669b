// Package vmm is the seam between banger and the virtual machine monitors
// that run its guests. Everything above a Driver is VMM-agnostic: drivers
// (firecracker, qemu) live in subpackages, and so does the state-holding
// fake that unit tests use.
package vmm

import (
	"github.com/banger-dev/banger/internal/proc"

	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/model"
)

// Spec is everything a driver needs to boot one VM. Host-side resources
// (tap, disks, initramfs, config disk) are prepared by the caller.
type Spec struct {
	VM  model.VM
	Dir string
	// Kernel and Initrd boot the VM with Cmdline.
	Kernel  string
	Initrd  string
	Cmdline string
	// Disks in the order the VMM should attach them. The guest tells them
	// apart by content, not order.
	Disks []Disk
	// Tap is the host tap device for the VM's one NIC, with MAC.
	Tap string
	MAC string
	// ConsoleLog receives the serial console, appended across boots.
	ConsoleLog string
	// ControlSocket is the Unix socket path where the driver exposes the
	// guest agent's control channel for the host to connect to.
	ControlSocket string
	// TunnelSocket is where the driver exposes the guest agent's tunnel
	// (package tunnel) when it is a socket of its own.
	TunnelSocket string
	// LeavesTemplate marks a cold boot that will be saved as a template
	// (Templater): a driver may keep its memory where the VMs started
	// from the template can share it.
	LeavesTemplate bool
}

// Disk is one block device.
type Disk struct {
	Path     string
	ReadOnly bool
}

// Handles are a running VM's transient facts. They are kept in memory and
// in the VM's handles file, never in the database, and are all banger
// needs to find, stop or clean up the VM later, even from a new daemon
// process.
type Handles struct {
	Driver string `json:"driver"`
	PID    int    `json:"pid"`
	// Tap is the host tap device the VM uses (owned by the VM service).
	Tap string `json:"tap,omitempty"`
	// ControlSocket is where the agent's control channel is reachable, and
	// ControlProto how to speak to it (see agentctl).
	ControlSocket string `json:"control_socket,omitempty"`
	ControlProto  string `json:"control_proto,omitempty"`
	// TunnelSocket is where the agent's tunnel is reachable (spoken to as
	// ControlProto says); empty for a VM booted without one.
	TunnelSocket string            `json:"tunnel_socket,omitempty"`
	Extra        map[string]string `json:"extra,omitempty"`
}

// Driver runs VMs with one monitor.
type Driver interface {
	// Name is the driver's name as recorded on each VM ("qemu", ...).
	Name() string
	// Available returns nil when the driver can run guests on this host, and
	// otherwise an error that says what is missing and how to get it.
	Available(ctx context.Context) error
	// Start boots the VM and returns once the monitor runs it. On error
	// nothing of the attempt is left running.
	Start(ctx context.Context, spec Spec) (Handles, error)
	// Stop asks the guest to shut down, waits up to timeout, then kills it.
	// A timeout of 0 kills at once.
	Stop(ctx context.Context, h Handles, timeout time.Duration) error
	// Alive reports whether the VM behind h still runs.
	Alive(h Handles) bool
	// Cleanup releases whatever h still holds after the VM has died
	// (sockets, pidfiles). It is idempotent.
	Cleanup(ctx context.Context, h Handles) error
}

// Snapshotter is a driver that can save a running VM's memory and device
// state and start a VM that goes on from such a save.
type Snapshotter interface {
	// Save pauses the VM and writes its state to path, leaving it paused,
	// and returns the monitor's version, which a restore must match.
	Save(ctx context.Context, h Handles, path string) (version string, err error)
	// Resume continues a VM that Save paused.
	Resume(ctx context.Context, h Handles) error
	// StartFrom starts a VMM for spec that goes on from the state at path,
	// saved by a monitor of the given version (ErrSnapshotMismatch
	// otherwise), and returns once the guest runs.
	StartFrom(ctx context.Context, spec Spec, path, version string) (Handles, error)
}

// Templater is a Snapshotter whose saves can share memory with the VMs
// started from them.
type Templater interface {
	// SaveTemplate is Save for a VM booted with Spec.LeavesTemplate: the
	// state at path may refer to files it writes beside path, which
	// StartFrom maps copy-on-write and nothing may change afterwards.
	SaveTemplate(ctx context.Context, h Handles, path string) (version string, err error)
}

// ErrSnapshotMismatch is a snapshot that cannot be restored here: taken
// with another monitor version, or for another machine.
var ErrSnapshotMismatch = errors.New("the snapshot does not match this vm")

// None is the driver used when no monitor is usable on this host. Every
// call that would run a guest fails with Reason.
type None struct {
	Reason string
}

// Name is "none".
func (None) Name() string { return "none" }

// Available always fails with the reason no driver could be used.
func (n None) Available(context.Context) error {
	return model.Errorf(model.ErrUnavailable, "no VM driver available: %s", n.Reason)
}

// Start always fails.
func (n None) Start(ctx context.Context, _ Spec) (Handles, error) {
	return Handles{}, n.Available(ctx)
}

// Stop has nothing to stop.
func (None) Stop(context.Context, Handles, time.Duration) error { return nil }

// Alive is always false.
func (None) Alive(Handles) bool { return false }

// Cleanup has nothing to release.
func (None) Cleanup(context.Context, Handles) error { return nil }

// Stats are a running VM's resource counters, from the guest's point of
// view for network (tx = sent by the guest).
type Stats struct {
	CPUSeconds     float64 `json:"cpu_seconds"`
	MemoryRSSBytes int64   `json:"memory_rss_bytes"`
	DiskReadBytes  int64   `json:"disk_read_bytes"`
	DiskWriteBytes int64   `json:"disk_write_bytes"`
	NetRxBytes     int64   `json:"net_rx_bytes"`
	NetTxBytes     int64   `json:"net_tx_bytes"`
}

// PauseReader is implemented by drivers that can tell when the VMM has
// paused a running guest by itself, and why ("" when it runs): QEMU stops
// a guest whose disk write failed (io-error), for example when the host's
// filesystem is full.
type PauseReader interface {
	Paused(ctx context.Context, h Handles) (string, error)
}

// ErrGuestHung marks a boot whose guest stopped making progress (its agent
// went silent): under TCG a guest now and then locks up early in its boot
// (every vCPU stuck in the kernel), and a fresh VMM boots it fine, so the
// VM service boots it once more.
var ErrGuestHung = errors.New("the guest hung while booting")

// Exit says why a VMM exited on its own.
type Exit int

const (
	// ExitUnknown: a crash, a kill, or a driver that cannot tell.
	ExitUnknown Exit = iota
	// ExitPoweroff: the guest powered itself off.
	ExitPoweroff
	// ExitReboot: the guest rebooted; banger boots it again.
	ExitReboot
)

// ExitWatcher is implemented by drivers that learn why their VMM exits.
// Watch starts watching a running VMM (after a boot, or when a new daemon
// adopts one); ExitOf reads what it saw once the VMM is gone, before
// Cleanup removes it.
type ExitWatcher interface {
	Watch(h Handles)
	ExitOf(h Handles) Exit
}

// StatsReader is implemented by drivers that can report Stats.
type StatsReader interface {
	Stats(ctx context.Context, h Handles) (Stats, error)
}

// ProcessStats fills CPU time and resident memory of the VMM process from
// /proc, which is the same for every driver.
func ProcessStats(pid int) (Stats, error) {
	u, err := proc.Stat(pid)
	if err != nil {
		return Stats{}, fmt.Errorf("reading vmm process stats: %w", err)
	}
	return Stats{CPUSeconds: u.CPUSeconds, MemoryRSSBytes: u.RSSBytes}, nil
}

// TapStats reads a tap's host-side counters and turns them to the guest's
// view: what the host receives on the tap is what the guest sent.
func TapStats(tap string) (rx, tx int64) {
	read := func(name string) int64 {
		b, err := os.ReadFile("/sys/class/net/" + tap + "/statistics/" + name)
		if err != nil {
			return 0
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	return read("tx_bytes"), read("rx_bytes")
}
