// Package fakevmm is a state-holding vmm.Driver for unit tests: it keeps a
// table of "running" machines, can be told to block or fail a boot, and
// prints its state for golden comparisons.
package fakevmm

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/banger-dev/banger/internal/vmm"
)

// Driver is the fake. The zero value is not usable; call New.
type Driver struct {
	mu       sync.Mutex
	machines map[int]string // pid → VM name
	exits    map[int]vmm.Exit
	nextPID  int
	starts   int

	// BeforeStart, when set, runs at the start of every Start; a non-nil
	// error fails the boot. Tests use it to block boots or count overlap.
	BeforeStart func(ctx context.Context, spec vmm.Spec) error
	// Unavailable, when set, is returned by Available.
	Unavailable error
	name        string
}

// New makes an empty fake named "fake".
func New() *Driver { return NewNamed("fake") }

// NewNamed makes an empty fake with another name, to stand for a second
// VMM.
func NewNamed(name string) *Driver {
	return &Driver{machines: map[int]string{}, nextPID: 1000, name: name}
}

// Name is the fake's name.
func (d *Driver) Name() string { return d.name }

// Available returns d.Unavailable.
func (d *Driver) Available(context.Context) error { return d.Unavailable }

// Start records a running machine.
func (d *Driver) Start(ctx context.Context, spec vmm.Spec) (vmm.Handles, error) {
	if d.BeforeStart != nil {
		if err := d.BeforeStart(ctx, spec); err != nil {
			return vmm.Handles{}, err
		}
	}
	if err := ctx.Err(); err != nil {
		return vmm.Handles{}, fmt.Errorf("fake boot of %s: %w", spec.VM.Name, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nextPID++
	d.starts++
	d.machines[d.nextPID] = spec.VM.Name
	return vmm.Handles{Driver: d.name, PID: d.nextPID}, nil
}

// Stop forgets the machine.
func (d *Driver) Stop(_ context.Context, h vmm.Handles, _ time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.machines, h.PID)
	return nil
}

// Alive reports whether the machine is recorded.
func (d *Driver) Alive(h vmm.Handles) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.machines[h.PID]
	return ok
}

// Cleanup does nothing.
func (d *Driver) Cleanup(context.Context, vmm.Handles) error { return nil }

// Crash makes a machine vanish, as if its process died.
func (d *Driver) Crash(name string) { d.Exit(name, vmm.ExitUnknown) }

// Exit makes a machine's process end for reason, as a guest's poweroff or
// reboot does.
func (d *Driver) Exit(name string, reason vmm.Exit) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.exits == nil {
		d.exits = map[int]vmm.Exit{}
	}
	for pid, n := range d.machines {
		if n == name {
			delete(d.machines, pid)
			d.exits[pid] = reason
		}
	}
}

// Watch does nothing: Exit records the reason.
func (d *Driver) Watch(vmm.Handles) {}

// ExitOf says how Exit ended the machine.
func (d *Driver) ExitOf(h vmm.Handles) vmm.Exit {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.exits[h.PID]
}

// Starts counts successful boots.
func (d *Driver) Starts() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.starts
}

// String lists running machines by name, one per line, sorted.
func (d *Driver) String() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var names []string
	for _, n := range d.machines {
		names = append(names, "running "+n)
	}
	sort.Strings(names)
	return strings.Join(names, "\n")
}

// Snapshotting is the fake with snapshots (vmm.Snapshotter and
// vmm.PauseReader): Save pauses a machine and writes its name to the
// state file, StartFrom starts one from such a file.
type Snapshotting struct {
	*Driver
	pmu    sync.Mutex
	paused map[int]bool
	// FailSave, when set, is what Save returns after pausing.
	FailSave error
}

// SnapshotVersion is the version the fake's snapshots carry.
const SnapshotVersion = "fake-1"

// NewSnapshotting makes an empty fake that takes snapshots.
func NewSnapshotting() *Snapshotting {
	return &Snapshotting{Driver: New(), paused: map[int]bool{}}
}

// Save pauses the machine and writes its state file.
func (d *Snapshotting) Save(_ context.Context, h vmm.Handles, path string) (string, error) {
	if !d.Alive(h) {
		return "", fmt.Errorf("fake save: machine %d is not running", h.PID)
	}
	d.pmu.Lock()
	d.paused[h.PID] = true
	d.pmu.Unlock()
	if d.FailSave != nil {
		return "", d.FailSave
	}
	d.mu.Lock()
	name := d.machines[h.PID]
	d.mu.Unlock()
	if err := os.WriteFile(path, []byte(name), 0o600); err != nil {
		return "", err
	}
	return SnapshotVersion, nil
}

// Resume unpauses the machine.
func (d *Snapshotting) Resume(_ context.Context, h vmm.Handles) error {
	d.pmu.Lock()
	defer d.pmu.Unlock()
	delete(d.paused, h.PID)
	return nil
}

// Paused says "paused" for a machine Save paused and nothing resumed.
func (d *Snapshotting) Paused(_ context.Context, h vmm.Handles) (string, error) {
	d.pmu.Lock()
	defer d.pmu.Unlock()
	if d.paused[h.PID] {
		return "paused", nil
	}
	return "", nil
}

// IsPaused reports whether the named machine is paused.
func (d *Snapshotting) IsPaused(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pmu.Lock()
	defer d.pmu.Unlock()
	for pid, n := range d.machines {
		if n == name && d.paused[pid] {
			return true
		}
	}
	return false
}

// StartFrom starts a machine from a state file Save wrote.
func (d *Snapshotting) StartFrom(ctx context.Context, spec vmm.Spec, path, version string) (vmm.Handles, error) {
	if version != SnapshotVersion {
		return vmm.Handles{}, fmt.Errorf("%w: fake version %s", vmm.ErrSnapshotMismatch, version)
	}
	if _, err := os.Stat(path); err != nil {
		return vmm.Handles{}, fmt.Errorf("fake restore: %w", err)
	}
	return d.Start(ctx, spec)
}
