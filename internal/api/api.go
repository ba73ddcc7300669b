// Package api is the wire contract between banger and bangerd: JSON-RPC
// method names, their params and results, and error codes. It imports only
// the standard library, so the CLI can depend on it without pulling in the
// daemon.
package api

import "time"

// Method names.
const (
	MethodDaemonStatus   = "daemon.status"
	MethodDaemonShutdown = "daemon.shutdown"
	MethodDaemonReload   = "daemon.reload"

	MethodVMCreate  = "vm.create"
	MethodVMList    = "vm.list"
	MethodVMShow    = "vm.show"
	MethodVMDelete  = "vm.delete"
	MethodVMStart   = "vm.start"
	MethodVMStop    = "vm.stop"
	MethodVMRestart = "vm.restart"
	MethodVMSSHInfo = "vm.ssh_info"
	// MethodVMTunnel turns its connection into a byte stream to a guest
	// TCP port (a stream method: the connection's only request).
	MethodVMTunnel = "vm.tunnel"
	MethodVMLogs   = "vm.logs"
	MethodVMStats  = "vm.stats"
	MethodVMSet    = "vm.set"
	// Snapshots of a running VM, and going back to one.
	MethodVMSnapshot       = "vm.snapshot"
	MethodVMSnapshotList   = "vm.snapshot.list"
	MethodVMSnapshotDelete = "vm.snapshot.delete"
	MethodVMRestore        = "vm.restore"
	// Copies of a running VM, each with its own identity.
	MethodVMFork = "vm.fork"

	MethodImageList    = "image.list"
	MethodImageShow    = "image.show"
	MethodImageDelete  = "image.delete"
	MethodImagePull    = "image.pull"
	MethodImagePrune   = "image.prune"
	MethodImageCatalog = "image.catalog"
	// MethodImageRegister is a stream method like image.import: a tar of
	// vmlinuz, rootfs.ext4 and optionally modules/KVER/..., then one
	// line with the operation.
	MethodImageRegister = "image.register"
	// MethodImageImport is a stream method: the client sends an image
	// archive and half-closes; the daemon answers with one line, the
	// operation that imports it (or an error object).
	MethodImageImport = "image.import"
	// MethodImageLoad is a stream method like image.import: a bundle
	// (see image.Bundle), then one line with the operation that registers
	// it.
	MethodImageLoad = "image.load"
	// MethodImageExport is a stream method the other way: the daemon
	// sends image Name as a bundle, framed in chunks (rpc.ReadChunks).
	MethodImageExport = "image.export"
	// MethodImagePromote starts an operation that makes a stopped VM's
	// root filesystem an image.
	MethodImagePromote = "image.promote"

	MethodWorkspaceRecord = "workspace.record"
	MethodWorkspaceShow   = "workspace.show"
	MethodWorkspaceList   = "workspace.list"

	MethodOpStatus = "op.status"
	MethodOpCancel = "op.cancel"
	MethodOpList   = "op.list"
)

// JSON-RPC 2.0 error codes: the standard ones, then banger's own in the
// range the specification reserves for servers.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternal       = -32603

	CodeNotFound         = -32000
	CodeConflict         = -32001
	CodeInvalidArgument  = -32002
	CodePermissionDenied = -32003
	CodeWrongState       = -32004
	CodeUnavailable      = -32005
	CodeCancelled        = -32006
)

// DaemonStatus answers daemon.status.
type DaemonStatus struct {
	Version       string  `json:"version"`
	PID           int     `json:"pid"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	Socket        string  `json:"socket"`
	StateDir      string  `json:"state_dir"`
	// Driver is the VMM driver new VMs get ("none" when no driver is usable),
	// and DriverReason says why it was chosen or why none could be.
	Driver       string `json:"driver"`
	DriverReason string `json:"driver_reason"`
	VMs          int    `json:"vms"`
	RunningVMs   int    `json:"running_vms"`
}

// VM is a VM as the API shows it.
type VM struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
	Image string `json:"image"`
	// ImageID is the image content the VM boots from ("" until the image
	// is local).
	ImageID   string `json:"image_id"`
	VCPUs     int    `json:"vcpus"`
	MemoryMiB int64  `json:"memory_mib"`
	DiskMiB   int64  `json:"disk_mib"`
	IP        string `json:"ip"`
	MAC       string `json:"mac"`
	// Network is "bridge" or "none".
	Network string `json:"network"`
	Driver  string `json:"driver"`
	Dir     string `json:"dir"`
	// AutoRemove says the VM goes when the session that made it ends.
	AutoRemove bool `json:"auto_remove,omitempty"`
	// Publish lists the forwarded ports, as "127.0.0.1:8080->80/tcp".
	Publish []string `json:"publish,omitempty"`
	// Paused, for a running VM, says why its VMM holds it paused.
	Paused    string    `json:"paused,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Operation is asynchronous work as the API shows it.
type Operation struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Target string `json:"target"`
	State  string `json:"state"`
	Phase  string `json:"phase"`
	Done   int64  `json:"done"`
	Total  int64  `json:"total"`
	// Items are the parts of the phase with progress of their own: an
	// image pull's layers to download, by digest, with their bytes.
	Items      []OpItem   `json:"items,omitempty"`
	Error      string     `json:"error,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// OpItem is one part of an operation's phase.
type OpItem struct {
	Name  string `json:"name"`
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
}

// Operation states as they appear on the wire.
const (
	OpRunning   = "running"
	OpSucceeded = "succeeded"
	OpFailed    = "failed"
	OpCancelled = "cancelled"
)

// DaemonReloadResult is daemon.reload's result: the config keys whose new
// values are in force, and those that changed but wait for a restart.
type DaemonReloadResult struct {
	Applied     []string `json:"applied"`
	NeedRestart []string `json:"need_restart"`
}

// DaemonShutdownParams are daemon.shutdown's params. Teardown also removes
// everything banger added to the host (bridge, taps, nftables table); it
// is refused while any VM runs.
type DaemonShutdownParams struct {
	Teardown bool `json:"teardown,omitempty"`
}

// VMCreateParams are vm.create's params. Sizes are strings as the user typed
// them ("512M", "2G", "2048"); the daemon parses and validates them so every
// client gets the same rules. Empty fields take the daemon's defaults.
type VMCreateParams struct {
	Name  string `json:"name"`
	Image string `json:"image,omitempty"`
	// VCPUs is nil for the default; 0 is sent as given and refused.
	VCPUs   *int   `json:"vcpus,omitempty"`
	Memory  string `json:"memory,omitempty"`
	Disk    string `json:"disk,omitempty"`
	NoStart bool   `json:"no_start,omitempty"`
	// Cold boots the VM even when a template of its image would start it
	// from saved memory at once.
	Cold bool `json:"cold,omitempty"`
	// AutoRemove ties the VM to the connection the create came on: the
	// daemon deletes it when that connection closes (`vm run --rm`).
	AutoRemove bool `json:"auto_remove,omitempty"`
	// Publish are HOSTPORT:GUESTPORT[/tcp] forwards from the host's
	// loopback to the guest.
	Publish []string `json:"publish,omitempty"`
	// Network is "bridge" (the default) or "none".
	Network string `json:"network,omitempty"`
}

// VMTunnelParams names the running VM and the guest TCP port to reach.
type VMTunnelParams struct {
	Name string `json:"name"`
	Port int    `json:"port"`
}

// VMCreateResult is vm.create's result: the reserved VM and the operation
// that finishes creating (and, unless NoStart, booting) it.
type VMCreateResult struct {
	VM        VM        `json:"vm"`
	Operation Operation `json:"operation"`
	// Warnings are things the caller should know, such as disks that may
	// outgrow the free space.
	Warnings []string `json:"warnings,omitempty"`
}

// VMRef names one VM by name or ID.
type VMRef struct {
	Name string `json:"name"`
}

// VMSetParams are vm.set's params: the fields given change, the others stay.
type VMSetParams struct {
	Name   string `json:"name"`
	VCPUs  *int   `json:"vcpus,omitempty"`
	Memory string `json:"memory,omitempty"`
	Disk   string `json:"disk,omitempty"`
}

// VMForkParams ask for Count copies of running VM Name, called New (one)
// or New-1 … New-Count.
type VMForkParams struct {
	Name  string `json:"name"`
	New   string `json:"new"`
	Count int    `json:"count"`
}

// VMSnapshotParams name a VM and one of its snapshots.
type VMSnapshotParams struct {
	Name     string `json:"name"`
	Snapshot string `json:"snapshot"`
}

// Snapshot is a VM's snapshot as the API shows it.
type Snapshot struct {
	VM        string    `json:"vm"`
	Name      string    `json:"name"`
	SizeBytes int64     `json:"size_bytes"`
	Driver    string    `json:"driver"`
	Version   string    `json:"version"`
	ImageID   string    `json:"image_id"`
	VCPUs     int       `json:"vcpus"`
	MemoryMiB int64     `json:"memory_mib"`
	DiskMiB   int64     `json:"disk_mib"`
	CreatedAt time.Time `json:"created_at"`
}

// VMDeleteParams are vm.delete's params.
type VMDeleteParams struct {
	Name  string `json:"name"`
	Force bool   `json:"force,omitempty"`
}

// OpRef names one operation.
type OpRef struct {
	ID string `json:"id"`
}

// Empty is the result of methods that return nothing.
type Empty struct{}

// SSHInfo is what a client needs to open SSH to a VM itself: the address,
// the daemon's private key (callers are trusted members), and the VM's
// pinned host key, so the user is never asked to trust one.
type SSHInfo struct {
	// Address is the guest's host:port, empty for a VM without a network:
	// then Tunnel says to reach port 22 through vm.tunnel.
	Address    string `json:"address"`
	Tunnel     bool   `json:"tunnel,omitempty"`
	User       string `json:"user"`
	PrivateKey string `json:"private_key"`
	HostKey    string `json:"host_key"`
}

// VMLogsParams asks for console output from Offset on, at most Max bytes.
type VMLogsParams struct {
	Name   string `json:"name"`
	Offset int64  `json:"offset"`
	Max    int64  `json:"max,omitempty"`
}

// VMLogs is a chunk of console output. Next is the offset to ask for next;
// Running says whether more may come.
type VMLogs struct {
	Data    string `json:"data"`
	Next    int64  `json:"next"`
	Running bool   `json:"running"`
}

// Image is an image as the API shows it.
type Image struct {
	// Name is "" for a content no name refers to any more that a VM
	// still boots from.
	Name string `json:"name"`
	// ID is the digest of the image's content (kernel, root filesystem,
	// modules, config); names refer to it.
	ID         string `json:"id"`
	KernelPath string `json:"kernel_path"`
	InitrdPath string `json:"initrd_path,omitempty"`
	RootfsPath string `json:"rootfs_path"`
	Source     string `json:"source"`
	Digest     string `json:"digest"`
	SizeBytes  int64  `json:"size_bytes"`
	// Config is an OCI image's runtime config.
	Config *ImageConfig `json:"config,omitempty"`
	// Layers are an OCI image's cached layer digests.
	Layers []string `json:"layers,omitempty"`
	// UsedBy names the VMs built on the image.
	UsedBy    []string  `json:"used_by"`
	CreatedAt time.Time `json:"created_at"`
}

// ImageConfig is an OCI image's runtime config, as docker honours it.
type ImageConfig struct {
	Env        []string `json:"env,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// ImagePromoteParams names the stopped VM to promote and the new image.
type ImagePromoteParams struct {
	VM   string `json:"vm"`
	Name string `json:"name"`
}

// ImagePullParams asks for an image: a catalog name or an OCI reference.
type ImagePullParams struct {
	Name string `json:"name"`
	// As is the local name (default: Name as given).
	As string `json:"as,omitempty"`
	// Auth is the caller's own registry credential, resolved on the
	// caller's side, used for this pull only and never stored.
	Auth     *RegistryAuth `json:"auth,omitempty"`
	Insecure bool          `json:"insecure,omitempty"`
	Platform string        `json:"platform,omitempty"`
}

// RegistryAuth is a registry credential as docker's config holds one.
type RegistryAuth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identity_token,omitempty"`
	RegistryToken string `json:"registry_token,omitempty"`
}

// ImageImportParams name the image an import makes.
type ImageImportParams struct {
	Name string `json:"name"`
}

// ImageImportResult is the line an import's stream ends with.
type ImageImportResult struct {
	Operation *Operation `json:"operation,omitempty"`
	Error     *string    `json:"error,omitempty"`
	// Code is the error's code, as an RPC error carries it.
	Code int `json:"code,omitempty"`
}

// ImagePruneParams asks image.prune to delete, with All, every image no
// VM uses too (not only cached layers nothing uses).
type ImagePruneParams struct {
	All bool `json:"all,omitempty"`
}

// ImagePruneResult is what a prune removed.
type ImagePruneResult struct {
	Images []string `json:"images"`
	Layers int      `json:"layers"`
	Bytes  int64    `json:"bytes"`
}

// CatalogEntry is one name of the image catalog.
type CatalogEntry struct {
	Name string `json:"name"`
	// Kind is "debian" (built from packages), "oci" (pulled) or "bundle"
	// (downloaded by the CLI and loaded).
	Kind   string `json:"kind"`
	Source string `json:"source"`
	// OCI is an oci entry's reference.
	OCI string `json:"oci,omitempty"`
	// Bundle and SHA256 are a bundle entry's URL and the file's sha256.
	Bundle string `json:"bundle,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// User says the entry comes from the user's catalog file.
	User  bool `json:"user,omitempty"`
	Local bool `json:"local"`
}

// ImageCatalog is image.catalog's result: the entries and the user's
// catalog file (with what was wrong with it, if anything).
type ImageCatalog struct {
	Entries []CatalogEntry `json:"entries"`
	File    string         `json:"file"`
	Error   string         `json:"error,omitempty"`
}

// ImageRef names one image.
type ImageRef struct {
	Name string `json:"name"`
}

// VMStats are a running VM's resource counters (network from the guest's
// side: tx is what the guest sent).
type VMStats struct {
	Name           string  `json:"name"`
	Driver         string  `json:"driver"`
	VCPUs          int     `json:"vcpus"`
	MemoryMiB      int64   `json:"memory_mib"`
	CPUSeconds     float64 `json:"cpu_seconds"`
	MemoryRSSBytes int64   `json:"memory_rss_bytes"`
	DiskReadBytes  int64   `json:"disk_read_bytes"`
	DiskWriteBytes int64   `json:"disk_write_bytes"`
	NetRxBytes     int64   `json:"net_rx_bytes"`
	NetTxBytes     int64   `json:"net_tx_bytes"`
}

// Host checks.
const (
	MethodDoctor = "doctor"
)

// DoctorCheck is one of doctor's results (its result is a list of them).
// Status is "OK", "WARN" or "FAIL"; Fix says in one line what to do and is
// empty when Status is OK.
type DoctorCheck struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Workspace is the daemon's record of a repository prepared into a VM:
// what prepare sent, as git object IDs, and where the last export left its
// branch. The CLI does the git work as the invoking user and records the
// outcome here; the daemon never reads a repository.
type Workspace struct {
	VM           string     `json:"vm"`
	Path         string     `json:"path"`
	Repo         string     `json:"repo"`
	Head         string     `json:"head"`
	Branch       string     `json:"branch"`
	IndexCommit  string     `json:"index_commit"`
	IndexTree    string     `json:"index_tree"`
	BaseCommit   string     `json:"base_commit"`
	BaseTree     string     `json:"base_tree"`
	ReadOnly     bool       `json:"readonly"`
	ExportBranch string     `json:"export_branch,omitempty"`
	ExportCommit string     `json:"export_commit,omitempty"`
	PreparedAt   time.Time  `json:"prepared_at"`
	ExportedAt   *time.Time `json:"exported_at,omitempty"`
}

// WorkspaceRef names a VM's workspace by its guest path.
type WorkspaceRef struct {
	VM   string `json:"vm"`
	Path string `json:"path"`
}
