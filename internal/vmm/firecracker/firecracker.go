// Package firecracker is the Firecracker driver: one `firecracker` process
// per VM, configured through its API socket (logger, metrics, machine,
// boot source, drives, network, vsock, then InstanceStart), with the
// serial console on its stdout appended to the VM's log and the agent's
// control channel on vsock. Every request it sends is checked against
// Firecracker's OpenAPI file by the contract tests.
package firecracker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/agentctl"
	"github.com/banger-dev/banger/internal/host/run"
	"github.com/banger-dev/banger/internal/kernel"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/proc"
	"github.com/banger-dev/banger/internal/vmm"
)

// Jailer runs Firecracker under its jailer: a chroot per VM and an
// unprivileged uid/gid. Off unless configured.
type Jailer struct {
	Binary     string // default "jailer"
	UID, GID   int
	ChrootBase string // default /srv/jailer
}

// Driver runs VMs under Firecracker.
type Driver struct {
	// Binary is the firecracker executable (default "firecracker" on PATH).
	Binary string
	// Jailer, when set, wraps every VM in the jailer.
	Jailer *Jailer
}

// Name is "firecracker".
func (d *Driver) Name() string { return "firecracker" }

func (d *Driver) binary() string {
	if d.Binary != "" {
		return d.Binary
	}
	return "firecracker"
}

// Available checks that the binary is installed.
func (d *Driver) Available(context.Context) error {
	if _, err := run.LookPath(d.binary()); err != nil {
		return model.Errorf(model.ErrUnavailable, "no VM driver available: %s not found; download a release from github.com/firecracker-microvm/firecracker/releases and put firecracker on PATH", d.binary())
	}
	if d.Jailer != nil {
		if _, err := run.LookPath(d.jailerBinary()); err != nil {
			return model.Errorf(model.ErrUnavailable, "jailer = true but %s is not on PATH; install it beside firecracker", d.jailerBinary())
		}
	}
	return nil
}

func (d *Driver) jailerBinary() string {
	if d.Jailer != nil && d.Jailer.Binary != "" {
		return d.Jailer.Binary
	}
	return "jailer"
}

// files are the per-VM paths the driver uses, as the host sees them.
type files struct {
	api, log, metrics, stderr string
}

func filesOf(dir string) files {
	return files{
		api:     filepath.Join(dir, "firecracker.sock"),
		log:     filepath.Join(dir, "firecracker.log"),
		metrics: filepath.Join(dir, "metrics.json"),
		stderr:  filepath.Join(dir, "firecracker.stderr"),
	}
}

// Drive IDs, in attach order.
var driveIDs = []string{"base", "upper", "work", "config"}

// Requests is the API conversation that configures and starts spec's VM,
// in order. Exported so the contract test can validate every request the
// driver sends against the OpenAPI file without running anything.
func Requests(spec vmm.Spec, kernelPath string) []Request {
	reqs := append(observability(spec),
		Request{"PUT", "/machine-config", map[string]any{"vcpu_count": spec.VM.VCPUs, "mem_size_mib": spec.VM.MemoryMiB, "smt": false}},
		Request{"PUT", "/boot-source", bootSource(kernelPath, spec)},
	)
	for i, disk := range spec.Disks {
		id := "disk" + strconv.Itoa(i)
		if i < len(driveIDs) {
			id = driveIDs[i]
		}
		// No root device: banger's initramfs finds and mounts the root
		// itself, and Firecracker would otherwise add root= to the command line.
		reqs = append(reqs, Request{"PUT", "/drives/" + id, map[string]any{
			"drive_id": id, "path_on_host": disk.Path, "is_root_device": false, "is_read_only": disk.ReadOnly,
		}})
	}
	if spec.Tap != "" {
		reqs = append(reqs, Request{"PUT", "/network-interfaces/eth0", map[string]any{
			"iface_id": "eth0", "host_dev_name": spec.Tap, "guest_mac": spec.MAC,
		}})
	}
	// An empty balloon that only reports free pages: the guest gives back
	// what it freed, and is never squeezed.
	reqs = append(reqs, Request{"PUT", "/balloon", map[string]any{"amount_mib": 0, "deflate_on_oom": true, "free_page_reporting": true}})
	if spec.ControlSocket != "" {
		reqs = append(reqs, Request{"PUT", "/vsock", map[string]any{"guest_cid": 3, "uds_path": spec.ControlSocket}})
	}
	return append(reqs, Request{"PUT", "/actions", map[string]any{"action_type": "InstanceStart"}})
}

// observability is the logger and metrics, the first requests of every
// process (a boot's or a snapshot load's).
func observability(spec vmm.Spec) []Request {
	f := filesOf(spec.Dir)
	return []Request{
		{"PUT", "/logger", map[string]any{"log_path": f.log, "level": "Info", "show_level": true, "show_log_origin": false}},
		{"PUT", "/metrics", map[string]any{"metrics_path": f.metrics}},
	}
}

func bootSource(kernelPath string, spec vmm.Spec) map[string]any {
	bs := map[string]any{"kernel_image_path": kernelPath, "boot_args": spec.Cmdline}
	if spec.Initrd != "" {
		bs["initrd_path"] = spec.Initrd
	}
	return bs
}

// Request is one API call.
type Request struct {
	Method string
	Path   string
	Body   any
}

// Start spawns Firecracker, configures it and starts the instance.
func (d *Driver) Start(ctx context.Context, spec vmm.Spec) (vmm.Handles, error) {
	kernelPath, err := kernel.Vmlinux(spec.Kernel)
	if err != nil {
		return vmm.Handles{}, err
	}
	return d.launch(ctx, spec, process{kernel: kernelPath})
}

// process is what a launch makes of the new Firecracker: a boot of kernel,
// or a load of the saved state at snapshot (host paths both); check, if
// set, runs first.
type process struct {
	kernel, snapshot string
	check            func(context.Context, *http.Client) error
}

// driveName is disk i's path as Firecracker is given it: relative to its
// working directory (the VM's directory, or its jail's root), where the
// driver links the disk. A snapshot keeps drive paths and reopens them on
// load, so a fork or an instant VM, loading in a directory of its own,
// opens its own disks and not those of the VM that was saved.
func driveName(i int) string { return "disk" + strconv.Itoa(i) + ".img" }

// linkDrives symlinks spec's disks into spec.Dir under their drive names
// and returns the spec with those names: an unjailed Firecracker runs in
// spec.Dir.
func linkDrives(spec vmm.Spec) (vmm.Spec, error) {
	out := spec
	out.Disks = nil
	for i, disk := range spec.Disks {
		target, err := filepath.Abs(disk.Path)
		if err != nil {
			return spec, err
		}
		link := filepath.Join(spec.Dir, driveName(i))
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return spec, fmt.Errorf("linking disk %s into the vm's directory: %w", disk.Path, err)
		}
		out.Disks = append(out.Disks, vmm.Disk{Path: driveName(i), ReadOnly: disk.ReadOnly})
	}
	return out, nil
}

// launch spawns Firecracker for spec, waits for its API, runs p's check
// and then boots or loads, with the paths as the process sees them (inside
// the jail, under the jailer).
func (d *Driver) launch(ctx context.Context, spec vmm.Spec, p process) (vmm.Handles, error) {
	var err error
	var reqSpec vmm.Spec
	reqKernel, reqSnapshot := p.kernel, p.snapshot
	argv := []string{d.binary(), "--api-sock", filesOf(spec.Dir).api, "--id", spec.VM.ID}
	f := filesOf(spec.Dir)
	controlSocket := spec.ControlSocket
	var j jail
	if d.Jailer == nil {
		if reqSpec, err = linkDrives(spec); err != nil {
			return vmm.Handles{}, err
		}
	} else {
		// Under the jailer the same files live inside the chroot.
		if reqSpec, j, err = d.prepareJail(spec, p); err != nil {
			_ = os.RemoveAll(d.jailDir(spec.VM.ID))
			return vmm.Handles{}, err
		}
		reqKernel, reqSnapshot = j.kernel, j.snapshot
		if argv, err = d.jailerArgv(spec.VM.ID); err != nil {
			return vmm.Handles{}, err
		}
		f = files{api: j.host("firecracker.sock"), log: j.host("firecracker.log"), metrics: j.host("metrics.json"), stderr: f.stderr}
		if controlSocket != "" {
			controlSocket = j.host("agent.sock")
		}
	}
	for _, p := range []string{f.api, controlSocket} {
		if p != "" {
			_ = os.Remove(p)
		}
	}
	// Firecracker opens the logger and metrics paths; make them exist.
	for _, p := range []string{f.log, f.metrics} {
		fh, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o640)
		if err != nil {
			return vmm.Handles{}, fmt.Errorf("creating %s: %w", p, err)
		}
		fh.Close()
	}
	console, err := os.OpenFile(spec.ConsoleLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return vmm.Handles{}, fmt.Errorf("opening console log: %w", err)
	}
	defer console.Close()
	stderr, err := os.OpenFile(f.stderr, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return vmm.Handles{}, fmt.Errorf("opening firecracker stderr: %w", err)
	}
	defer stderr.Close()

	proc, err := run.SpawnIn(spec.Dir, argv, nil, console, stderr)
	if err != nil {
		return vmm.Handles{}, fmt.Errorf("starting firecracker: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_, _ = proc.Wait()
		close(exited)
	}()
	// The vsock socket reaches every guest port: the tunnel is on it too.
	h := vmm.Handles{Driver: d.Name(), PID: proc.Pid, ControlSocket: controlSocket,
		ControlProto: agentctl.ProtoFirecrackerVsock, TunnelSocket: controlSocket,
		Extra: map[string]string{"api": f.api, "metrics": f.metrics, "id": spec.VM.ID}}
	if d.Jailer != nil {
		h.Extra["jail"] = d.jailDir(spec.VM.ID)
	}
	fail := func(err error) (vmm.Handles, error) {
		_ = proc.Kill()
		<-exited
		_ = d.Cleanup(context.WithoutCancel(ctx), h)
		return vmm.Handles{}, err
	}

	c := client(f.api)
	if err := waitAPI(ctx, c, exited); err != nil {
		return fail(fmt.Errorf("%w: %s", err, vmm.FileTail(f.stderr, 1500)))
	}
	if p.check != nil {
		if err := p.check(ctx, c); err != nil {
			return fail(err)
		}
	}
	c = slowClient(f.api) // a snapshot load reads the whole memory file
	conversation := Requests(reqSpec, reqKernel)
	if p.snapshot != "" {
		conversation = LoadRequests(reqSpec, reqSnapshot)
	}
	for _, r := range conversation {
		if err := call(ctx, c, r); err != nil {
			// A dropped connection usually means Firecracker died: give it a
			// moment to be reaped so the error can say so.
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				select {
				case <-exited:
					return fail(fmt.Errorf("firecracker exited during %s %s: %s", r.Method, r.Path, vmm.FileTail(f.stderr, 1500)))
				case <-time.After(time.Second):
				}
			}
			return fail(err)
		}
	}
	if j.snapshot != "" {
		dropState(j.root) // loaded: the process has its memory mapped
	}
	return h, nil
}

// client talks HTTP to Firecracker's API socket.
func client(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}, Timeout: 10 * time.Second}
}

// slowClient is client for requests that take as long as the guest's
// memory takes to write or read (snapshots).
func slowClient(sock string) *http.Client {
	c := client(sock)
	c.Timeout = 10 * time.Minute
	return c
}

func waitAPI(ctx context.Context, c *http.Client, exited <-chan struct{}) error {
	deadline := time.After(10 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://localhost/", nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("firecracker exited before its API socket answered")
		case <-deadline:
			return errors.New("firecracker's API socket did not answer within 10s")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// APIError is a request Firecracker refused, with its own fault message.
type APIError struct {
	Method, Path string
	Status       int
	Fault        string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("firecracker refused %s %s (%d): %s", e.Method, e.Path, e.Status, e.Fault)
}

func call(ctx context.Context, c *http.Client, r Request) error {
	var body io.Reader
	if r.Body != nil {
		b, err := json.Marshal(r.Body)
		if err != nil {
			return fmt.Errorf("encoding %s %s: %w", r.Method, r.Path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://localhost"+r.Path, body)
	if err != nil {
		return fmt.Errorf("building %s %s: %w", r.Method, r.Path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("firecracker %s %s: %w", r.Method, r.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return nil
	}
	var fault struct {
		FaultMessage string `json:"fault_message"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(raw, &fault) != nil || fault.FaultMessage == "" {
		fault.FaultMessage = strings.TrimSpace(string(raw))
	}
	return &APIError{Method: r.Method, Path: r.Path, Status: resp.StatusCode, Fault: fault.FaultMessage}
}

// Stop asks the agent (over vsock) for a clean poweroff, falls back to
// SendCtrlAltDel, and kills Firecracker when timeout passes.
func (d *Driver) Stop(ctx context.Context, h vmm.Handles, timeout time.Duration) error {
	if !d.Alive(h) {
		return nil
	}
	return vmm.GracefulStop(ctx, "firecracker", h, timeout, func(ctx context.Context) {
		_ = call(ctx, client(h.Extra["api"]), Request{"PUT", "/actions", map[string]any{"action_type": "SendCtrlAltDel"}})
	})
}

// Alive reports whether h's Firecracker still runs (the PID must be a
// firecracker serving this VM, not a reused PID): the VM's ID is on its
// command line (--id), jailed or not.
func (d *Driver) Alive(h vmm.Handles) bool {
	args := proc.Cmdline(h.PID)
	if len(args) == 0 || filepath.Base(args[0]) != filepath.Base(d.binary()) {
		return false
	}
	for i := range args[:len(args)-1] {
		if args[i] == "--id" && args[i+1] == h.Extra["id"] {
			return true
		}
	}
	return false
}

// Cleanup removes the sockets Firecracker left, and the jail.
func (d *Driver) Cleanup(_ context.Context, h vmm.Handles) error {
	if jail := h.Extra["jail"]; jail != "" {
		if err := os.RemoveAll(jail); err != nil {
			return fmt.Errorf("removing jail: %w", err)
		}
	}
	for _, p := range []string{h.Extra["api"], h.ControlSocket} {
		if p != "" {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("removing %s: %w", p, err)
			}
		}
	}
	return nil
}

// Stats reads CPU and memory from /proc and disk and network bytes from
// Firecracker's metrics file, after asking it to flush.
func (d *Driver) Stats(ctx context.Context, h vmm.Handles) (vmm.Stats, error) {
	st, err := vmm.ProcessStats(h.PID)
	if err != nil {
		return st, err
	}
	_ = call(ctx, client(h.Extra["api"]), Request{"PUT", "/actions", map[string]any{"action_type": "FlushMetrics"}})
	b, err := os.ReadFile(h.Extra["metrics"])
	if err != nil {
		return st, nil
	}
	// Firecracker's counters are deltas since the previous flush, one JSON
	// object per line: the totals are their sums.
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m struct {
			Net struct {
				RxBytes int64 `json:"rx_bytes_count"`
				TxBytes int64 `json:"tx_bytes_count"`
			} `json:"net"`
			Block struct {
				ReadBytes  int64 `json:"read_bytes"`
				WriteBytes int64 `json:"write_bytes"`
			} `json:"block"`
		}
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		st.NetRxBytes += m.Net.RxBytes
		st.NetTxBytes += m.Net.TxBytes
		st.DiskReadBytes += m.Block.ReadBytes
		st.DiskWriteBytes += m.Block.WriteBytes
	}
	return st, nil
}
