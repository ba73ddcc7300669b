// Package paths decides where banger keeps things: the default socket and
// state directory for the calling user, and the layout inside the state
// directory. Every path banger derives from an ID is made here, so the
// layout is written down once.
package paths

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// System-wide defaults, used when running as root.
const (
	SystemSocket   = "/run/banger/bangerd.sock"
	SystemStateDir = "/var/lib/banger"
)

// DefaultSocket is where the daemon listens unless told otherwise:
// BANGER_SOCKET, else the system socket for root, else under
// $XDG_RUNTIME_DIR (or /tmp/banger-UID when that is unset).
func DefaultSocket() string {
	if s := os.Getenv("BANGER_SOCKET"); s != "" {
		return s
	}
	if os.Geteuid() == 0 {
		return SystemSocket
	}
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
		return filepath.Join(rt, "banger", "bangerd.sock")
	}
	return filepath.Join(os.TempDir(), "banger-"+strconv.Itoa(os.Geteuid()), "bangerd.sock")
}

// DefaultStateDir is where durable state lives unless told otherwise:
// BANGER_STATE_DIR, else /var/lib/banger for root, else
// $XDG_DATA_HOME/banger (~/.local/share/banger).
func DefaultStateDir() (string, error) {
	if s := os.Getenv("BANGER_STATE_DIR"); s != "" {
		return s, nil
	}
	if os.Geteuid() == 0 {
		return SystemStateDir, nil
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "banger"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding a state directory: %w; set BANGER_STATE_DIR", err)
	}
	return filepath.Join(home, ".local", "share", "banger"), nil
}

// Layout is the state directory's structure.
type Layout struct {
	StateDir string
}

// DB is the SQLite database.
func (l Layout) DB() string { return filepath.Join(l.StateDir, "banger.db") }

// Log is the daemon's log file.
func (l Layout) Log() string { return filepath.Join(l.StateDir, "bangerd.log") }

// Config is the default config file.
func (l Layout) Config() string { return filepath.Join(l.StateDir, "config.toml") }

// VMsDir holds one directory per VM.
func (l Layout) VMsDir() string { return filepath.Join(l.StateDir, "vms") }

// VMDir is the directory of the VM with this ID: its disks, logs, sockets
// and handles file.
func (l Layout) VMDir(id string) string { return filepath.Join(l.VMsDir(), id) }

// HandlesFile records a running VM's transient handles (PID, tap, sockets)
// so a restarted daemon can find the VM again.
func (l Layout) HandlesFile(id string) string { return filepath.Join(l.VMDir(id), "handles.json") }

// ImagesDir holds one directory per image.
func (l Layout) ImagesDir() string { return filepath.Join(l.StateDir, "images") }

// VMFile is a file in the VM's directory. The names banger uses:
// upper.ext4 (overlay writable layer), work.ext4 (/work), config.img (the
// guest config disk), MaintenanceConfig, console.log, agent.sock (control
// channel), ssh_host_ed25519_key(.pub).
func (l Layout) VMFile(id, name string) string { return filepath.Join(l.VMDir(id), name) }

// SnapshotsDir holds a VM's snapshots, one directory each (state,
// upper.ext4, work.ext4); they go with the VM's directory.
func (l Layout) SnapshotsDir(id string) string { return filepath.Join(l.VMDir(id), "snapshots") }

// SnapshotDir is one of a VM's snapshots.
func (l Layout) SnapshotDir(id, name string) string { return filepath.Join(l.SnapshotsDir(id), name) }

// TemplatesDir holds the templates of instant VMs, one directory each
// (state, upper.ext4, work.ext4, template.json), named by what must match
// for a VM to start from it.
func (l Layout) TemplatesDir() string { return filepath.Join(l.StateDir, "templates") }

// TemplateDir is one template.
func (l Layout) TemplateDir(key string) string { return filepath.Join(l.TemplatesDir(), key) }

// MaintenanceConfig is the config disk of a VM's maintenance boot (an
// image promote), beside its own; it lives only as long as that boot.
const MaintenanceConfig = "maintenance.img"

// SSHKey is the daemon's private key, authorized in every guest.
func (l Layout) SSHKey() string { return filepath.Join(l.StateDir, "ssh", "id_ed25519") }

// InitramfsDir caches generated initramfs archives.
func (l Layout) InitramfsDir() string { return filepath.Join(l.StateDir, "initramfs") }

// ContentDir is the directory of one image's files, named by its
// content ID ("sha256:<hex>" becomes sha256-<hex>): names only refer to it.
func (l Layout) ContentDir(id string) string {
	return filepath.Join(l.ImagesDir(), strings.ReplaceAll(id, ":", "-"))
}

// BlobsDir caches OCI layer blobs by digest, shared by every image.
func (l Layout) BlobsDir() string { return filepath.Join(l.StateDir, "oci", "blobs") }
