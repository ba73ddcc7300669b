// Package guest is the contract between the host and banger-agent inside a
// VM: the per-VM config disk the agent reads at boot, how the agent tells
// its disks apart, and the control-channel messages. It imports only the
// standard library so both sides can share it.
package guest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Disk labels. The agent finds its disks by what is on them, never by
// device order, which differs between VMMs: the config disk starts with
// ConfigMagic; the overlay's writable disk and the work disk are ext4 with
// these labels; the read-only base is the remaining disk.
const (
	LabelUpper = "banger-upper"
	LabelWork  = "banger-work"
)

// ConfigMagic starts the config disk.
const ConfigMagic = "BANGER-GUEST-CONFIG-1\n"

// ConfigDiskSize is the config disk's size: a raw image, magic then JSON
// then zeros.
const ConfigDiskSize = 1 << 20

// ExecPath is where the agent puts a copy of itself in the guest's root at
// every boot; SSH sessions run their commands through `ExecPath exec`.
const ExecPath = "/usr/local/lib/banger/banger-agent"

// PortName is the virtio-serial port (QEMU) carrying the control channel.
const PortName = "org.banger.agent"

// VsockPort is the vsock port (Firecracker) carrying the control channel.
const VsockPort = 1024

// TunnelPortName is the virtio-serial port (QEMU) carrying the tunnel: the
// host's way to guest TCP ports that needs no guest network.
const TunnelPortName = "org.banger.tunnel"

// TunnelVsockPort is the vsock port (Firecracker) carrying the tunnel.
const TunnelVsockPort = 1025

// Config is what the agent needs to bring a VM up. Secrets (the SSH host
// key) travel here, never on the kernel command line.
type Config struct {
	Hostname string `json:"hostname"`
	// Address is the guest's IPv4 address with prefix, e.g. 172.16.0.2/24.
	Address string   `json:"address"`
	Gateway string   `json:"gateway"`
	DNS     []string `json:"dns"`
	// SearchDomain is appended to resolv.conf ("vm").
	SearchDomain   string   `json:"search_domain,omitempty"`
	MAC            string   `json:"mac"`
	AuthorizedKeys []string `json:"authorized_keys"`
	// HostKey is the OpenSSH-format ed25519 private host key banger made
	// for this VM; HostKeyPub its public half (authorized_keys format).
	HostKey    string `json:"host_key"`
	HostKeyPub string `json:"host_key_pub"`
	// Hosts are extra /etc/hosts entries, name → IP.
	Hosts map[string]string `json:"hosts,omitempty"`
	// Image is an OCI image's runtime config: the defaults of every
	// command run in the guest (nil for images that bring their own init).
	Image *ImageConfig `json:"image,omitempty"`
	// Maintenance boots nothing of the image: the agent mounts the root
	// overlay read-only, writes nothing into it, runs no init and serves
	// a tar of the root on ExportPort (an image promote reads it through
	// the tunnel). The guest's own kernel reads its filesystems; the host
	// never mounts them.
	Maintenance bool `json:"maintenance,omitempty"`
}

// ExportPort is the guest loopback port where a maintenance boot serves
// the tar of its root filesystem.
const ExportPort = 1023

// ExportEnd is the name of the empty entry that ends a complete export:
// a stream without it broke off.
const ExportEnd = ".banger-export-end"

// ImageConfig is what an OCI image says about running commands in it.
type ImageConfig struct {
	Env        []string `json:"env,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// ImageConfigPath is where the agent keeps the image config in the guest,
// for the exec helper and the embedded SSH server.
const ImageConfigPath = "/run/banger/image.json"

// EncodeDisk renders cfg as a config disk image of ConfigDiskSize bytes.
func EncodeDisk(cfg Config) ([]byte, error) {
	body, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encoding guest config: %w", err)
	}
	if len(ConfigMagic)+len(body) >= ConfigDiskSize {
		return nil, fmt.Errorf("guest config is %d bytes, more than the %d-byte config disk holds", len(body), ConfigDiskSize)
	}
	disk := make([]byte, ConfigDiskSize)
	n := copy(disk, ConfigMagic)
	copy(disk[n:], body)
	return disk, nil
}

// ErrNotConfigDisk means the device does not start with ConfigMagic.
var ErrNotConfigDisk = errors.New("not a banger config disk")

// DecodeDisk reads a config disk.
func DecodeDisk(r io.Reader) (Config, error) {
	buf := make([]byte, ConfigDiskSize)
	n, err := io.ReadFull(r, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return Config{}, fmt.Errorf("reading config disk: %w", err)
	}
	buf = buf[:n]
	rest, ok := bytes.CutPrefix(buf, []byte(ConfigMagic))
	if !ok {
		return Config{}, ErrNotConfigDisk
	}
	if i := bytes.IndexByte(rest, 0); i >= 0 {
		rest = rest[:i]
	}
	var cfg Config
	if err := json.Unmarshal(rest, &cfg); err != nil {
		return Config{}, fmt.Errorf("decoding config disk: %w", err)
	}
	return cfg, nil
}

// Message is one line of the control channel, JSON-encoded.
type Message struct {
	Type string `json:"type"`
	// Detail carries an error, a version or how the clock was moved
	// (MsgClockDone: ClockStepped or ClockSlewed), depending on Type.
	Detail string `json:"detail,omitempty"`
	// Time is a wall-clock reading in Unix nanoseconds (MsgClock).
	Time int64 `json:"time,omitempty"`
	// Offset is how far the guest's clock is behind the host's, in
	// nanoseconds (MsgClockAdjust; negative when it is ahead).
	Offset int64 `json:"offset,omitempty"`
	// ID ties an answer to its request (clock and identity messages).
	ID string `json:"id,omitempty"`
	// Identity is who the guest is to become (MsgIdentity).
	Identity *Identity `json:"identity,omitempty"`
}

// Identity is what a guest takes on when a restore or a fork starts it
// from saved memory: the config of the VM it now is (hostname, address,
// MAC, SSH host key, hosts) and what must never be shared between two
// copies of one memory image, a machine-id and fresh entropy for the
// kernel's RNG.
type Identity struct {
	Config Config `json:"config"`
	// MachineID is /etc/machine-id: 32 lowercase hex digits.
	MachineID string `json:"machine_id"`
	// Entropy is random bytes from the host, credited to the guest's RNG
	// before it reseeds.
	Entropy []byte `json:"entropy"`
}

// Control message types. The agent sends MsgReady once the guest's own
// init is running, then MsgHeartbeat every few seconds; the host sends
// MsgShutdown (answered by MsgAck, then a clean poweroff) or MsgPing
// (answered by MsgPong).
//
// The guest's clock follows the host's as NTP does, with the host as the
// server: the host sends MsgClockQuery, the agent answers MsgClock with its
// clock, the host takes the midpoint of its own send and receive times as
// the moment of that reading and sends MsgClockAdjust with the difference,
// which the agent applies (a step when large, a slew otherwise), answering
// MsgClockDone. A virtio-serial port outlives host connections, so a late
// answer can reach the next connection: the query's ID ties the answer to
// it, and clock messages have their own types.
//
// After a restore or a fork the host sends MsgIdentity (with Identity and
// an ID); the agent makes the guest that VM and answers MsgIdentityDone
// with the same ID, Detail empty or the error.
const (
	MsgReady     = "ready"
	MsgHeartbeat = "heartbeat"
	MsgShutdown  = "shutdown"
	MsgAck       = "ack"
	MsgPing      = "ping"
	MsgPong      = "pong"

	MsgIdentity     = "identity"
	MsgIdentityDone = "identity-done"

	MsgClockQuery  = "clock-query"
	MsgClock       = "clock"
	MsgClockAdjust = "clock-adjust"
	MsgClockDone   = "clock-done"
)

// How the agent moved the clock: MsgClockDone's Detail when it succeeded.
const (
	ClockStepped = "stepped"
	ClockSlewed  = "slewed"
)
