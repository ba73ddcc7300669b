package firecracker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/banger-dev/banger/internal/vmm"
)

// memFile is where a snapshot's guest memory goes, beside its state.
func memFile(state string) string { return state + ".mem" }

// SaveRequests pause the VM and write a full snapshot: its state to path,
// its memory beside it. Exported for the contract test.
func SaveRequests(path string) []Request {
	return []Request{
		{"PATCH", "/vm", map[string]any{"state": "Paused"}},
		{"PUT", "/snapshot/create", map[string]any{"snapshot_type": "Full", "snapshot_path": path, "mem_file_path": memFile(path)}},
	}
}

// ResumeRequest continues a paused VM.
func ResumeRequest() Request { return Request{"PATCH", "/vm", map[string]any{"state": "Resumed"}} }

// LoadRequests are a fresh process's conversation that goes on from the
// snapshot at path: logger and metrics, then the load, with spec's tap and
// vsock socket in place of the saved ones, resumed at once.
func LoadRequests(spec vmm.Spec, path string) []Request {
	load := map[string]any{
		"snapshot_path": path,
		"mem_backend":   map[string]any{"backend_type": "File", "backend_path": memFile(path)},
		"resume_vm":     true,
	}
	if spec.Tap != "" {
		load["network_overrides"] = []map[string]any{{"iface_id": "eth0", "host_dev_name": spec.Tap}}
	}
	if spec.ControlSocket != "" {
		load["vsock_override"] = map[string]any{"uds_path": spec.ControlSocket}
	}
	return append(observability(spec), Request{"PUT", "/snapshot/load", load})
}

// Save pauses the VM and writes a full snapshot (state at path, memory
// beside it), leaving it paused; it returns Firecracker's version. A
// jailed Firecracker writes into its jail, and the files are moved out.
func (d *Driver) Save(ctx context.Context, h vmm.Handles, path string) (string, error) {
	c := slowClient(h.Extra["api"])
	version, err := fcVersion(ctx, c)
	if err != nil {
		return "", err
	}
	root := jailRoot(h)
	target := path
	if root != "" {
		target = jailedState
		dropState(root) // what a daemon killed during a save left
	}
	for _, r := range SaveRequests(target) {
		if err := call(ctx, c, r); err != nil {
			if root != "" {
				dropState(root)
			}
			return "", err
		}
	}
	if root != "" {
		if err := saveOut(root, path); err != nil {
			return "", err
		}
	}
	return version, nil
}

// Resume continues a VM that Save paused.
func (d *Driver) Resume(ctx context.Context, h vmm.Handles) error {
	return call(ctx, client(h.Extra["api"]), ResumeRequest())
}

// StartFrom spawns Firecracker and loads the snapshot at path into it,
// with this boot's tap and vsock socket; a Firecracker of another version
// than the one that saved is refused before the load.
func (d *Driver) StartFrom(ctx context.Context, spec vmm.Spec, path, version string) (vmm.Handles, error) {
	check := func(ctx context.Context, c *http.Client) error {
		got, err := fcVersion(ctx, c)
		if err != nil {
			return err
		}
		if got != version {
			return fmt.Errorf("%w: it was taken with Firecracker %s and this is Firecracker %s", vmm.ErrSnapshotMismatch, version, got)
		}
		return nil
	}
	return d.launch(ctx, spec, process{snapshot: path, check: check})
}

func fcVersion(ctx context.Context, c *http.Client) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://localhost/version", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("firecracker GET /version: %w", err)
	}
	defer resp.Body.Close()
	var v struct {
		Version string `json:"firecracker_version"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.Version == "" {
		return "", fmt.Errorf("firecracker GET /version: no version in the answer (%d)", resp.StatusCode)
	}
	return v.Version, nil
}
