package model

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// VM is what a VM durably is. Transient handles (PIDs, tap names, loop
// devices) are deliberately absent: they live with the VM service, in memory
// and in the VM's handles file.
type VM struct {
	ID    string
	Name  string
	Image string
	// ImageID is the image content the VM was created from (empty until
	// the image is local); the VM boots from it whatever its name later
	// refers to.
	ImageID   string
	VCPUs     int
	MemoryMiB int64
	// DiskMiB is the size of the persistent work disk mounted at /work.
	DiskMiB   int64
	IP        string
	MAC       string
	State     State
	LastError string
	// Driver names the VMM the VM was created with; a VM keeps its driver.
	Driver string
	// AutoRemove marks a VM that lives only as long as the client session
	// that created it (`vm run --rm`).
	AutoRemove bool
	// Publish lists the guest ports forwarded from the host's loopback.
	Publish []PortMap
	// Network is NetworkBridge or NetworkNone ("" reads as bridge).
	Network   string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Image is a bootable image: a name referring to content. Several names
// may share one content; a content whose names were all deleted or moved
// (Name "") lives on while a VM uses it.
type Image struct {
	Name string
	// ID is the digest of the image's content: its kernel, initrd,
	// root filesystem, modules and config ("sha256:<hex>").
	ID         string
	KernelPath string
	InitrdPath string
	RootfsPath string
	// ModulesPath is the kernel's modules directory (lib/modules/<kver>).
	ModulesPath string
	Source      string
	// Digest identifies the source's content: the OCI manifest's digest,
	// or the root filesystem's sha256.
	Digest    string
	SizeBytes int64
	// Config is an OCI image's runtime config (nil for images with none).
	Config *ImageConfig
	// Layers are the digests of the cached layer blobs an OCI image was
	// built from.
	Layers    []string
	CreatedAt time.Time
}

// ImageConfig is what an OCI image says about running it, as docker
// honours it: the environment, the default command, the working directory
// and the user.
type ImageConfig struct {
	Env        []string `json:"env,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// OpState is where an asynchronous operation is.
type OpState string

// Operation states. Only OpRunning is not final.
const (
	OpRunning   OpState = "running"
	OpSucceeded OpState = "succeeded"
	OpFailed    OpState = "failed"
	OpCancelled OpState = "cancelled"
)

// OpItem is one part of an operation's phase: a layer being downloaded.
type OpItem struct {
	Name        string
	Done, Total int64
}

// Final reports whether the operation has finished.
func (s OpState) Final() bool { return s != OpRunning }

// Operation is long-running work (a create, later a pull) that callers poll.
type Operation struct {
	ID     string
	Kind   string
	Target string
	State  OpState
	Phase  string
	// Done and Total measure progress in the phase's own unit; Total 0 means
	// the phase has no measurable progress.
	Done  int64
	Total int64
	// Items are the parts of the current phase with progress of their
	// own (an image pull's layers), in the order they were reported.
	// They are kept in memory only, while the operation runs.
	Items      []OpItem
	Error      string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt time.Time
}

// NewID returns a random 16-hex-digit identifier. IDs never change, so they
// name directories and records even when a name is reused later.
func NewID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}
