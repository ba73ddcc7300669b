package model

import "time"

// Snapshot is a saved moment of a running VM: its memory and device
// state, and copies of its writable disks taken while it was paused, so
// that they match. What a restore must match is recorded with it.
type Snapshot struct {
	VMID string
	Name string
	// Driver and Version are the monitor that saved it.
	Driver, Version string
	ImageID         string
	VCPUs           int
	MemoryMiB       int64
	DiskMiB         int64
	// SizeBytes is what its files take on disk (they are sparse).
	SizeBytes int64
	CreatedAt time.Time
}
