package main

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
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/banger-dev/banger/internal/vmm/firecracker/apispec"
)

// Fault messages Firecracker gives, word for word.
const (
	errPostBoot      = "The requested operation is not supported after starting the microVM."
	errPreBoot       = "The requested operation is not supported before starting the microVM."
	errNoKernel      = "Start microvm error: Cannot start microvm without kernel configuration."
	errMetricsReinit = "Metrics error: Reinitialization of metrics not allowed."
)

// maxBody is Firecracker's default limit on an API request's payload.
const maxBody = 51200

// phase says when Firecracker accepts an operation.
type phase int

const (
	anyTime phase = iota
	preBoot
	postBoot
)

// phases classifies every operation of the API description by operationId,
// as Firecracker's request handlers do (rpc_interface.rs: the pre-boot
// controller refuses "OperationNotSupportedPreBoot" operations, the
// runtime controller "OperationNotSupportedPostBoot" ones). /actions
// depends on the action and is classified in actionPhases. The tests check
// that this table covers the whole spec and agrees with its "Pre-boot
// only" and "Post-boot only" notes.
var phases = map[string]phase{
	"describeInstance":        anyTime,
	"getFirecrackerVersion":   anyTime,
	"getMachineConfiguration": anyTime,
	"getExportVmConfig":       anyTime,
	"getMmds":                 anyTime,
	"putMmds":                 anyTime,
	"patchMmds":               anyTime,
	"describeBalloonConfig":   anyTime,

	"putGuestBootSource":             preBoot,
	"putLogger":                      preBoot,
	"putMetrics":                     preBoot,
	"putSerialDevice":                preBoot,
	"putGuestDriveByID":              preBoot,
	"putGuestPmemByID":               preBoot,
	"putGuestNetworkInterfaceByID":   preBoot,
	"putGuestVsock":                  preBoot,
	"putMachineConfiguration":        preBoot,
	"patchMachineConfiguration":      preBoot,
	"putCpuConfiguration":            preBoot,
	"putBalloon":                     preBoot,
	"putMmdsConfig":                  preBoot,
	"putEntropyDevice":               preBoot,
	"putMemoryHotplug":               preBoot,
	"loadSnapshot":                   preBoot,
	"createSnapshot":                 postBoot,
	"patchVm":                        postBoot,
	"patchGuestDriveByID":            postBoot,
	"patchGuestNetworkInterfaceByID": postBoot,
	"patchGuestPmemByID":             postBoot,
	"patchBalloon":                   postBoot,
	"patchBalloonStatsInterval":      postBoot,
	"describeBalloonStats":           postBoot,
	"startBalloonHinting":            postBoot,
	"describeBalloonHinting":         postBoot,
	"stopBalloonHinting":             postBoot,
	"getMemoryHotplug":               postBoot,
	"patchMemoryHotplug":             postBoot,
}

var actionPhases = map[string]phase{
	"InstanceStart":  preBoot,
	"FlushMetrics":   postBoot,
	"SendCtrlAltDel": postBoot,
}

// putCounters names the put_api_requests metric of each operation.
var putCounters = map[string]string{
	"createSyncAction":             "actions",
	"putGuestBootSource":           "boot_source",
	"putGuestDriveByID":            "drive",
	"putLogger":                    "logger",
	"putMachineConfiguration":      "machine_cfg",
	"putMetrics":                   "metrics",
	"putGuestNetworkInterfaceByID": "network",
	"putMmds":                      "mmds",
	"putGuestVsock":                "vsock",
	"putCpuConfiguration":          "cpu_cfg",
	"putSerialDevice":              "serial",
	"putEntropyDevice":             "entropy",
	"putBalloon":                   "balloon",
	"putMmdsConfig":                "mmds",
	"putGuestPmemByID":             "pmem",
	"putMemoryHotplug":             "hotplug_memory",
}

type drive struct {
	ID           string `json:"drive_id"`
	PathOnHost   string `json:"path_on_host,omitempty"`
	IsRootDevice bool   `json:"is_root_device"`
	IsReadOnly   *bool  `json:"is_read_only,omitempty"`
	raw          json.RawMessage
	// file is the open backing file, held like Firecracker holds it (a
	// test can see which file a process has through /proc/PID/fd).
	file *os.File
}

// open opens the drive's backing file (relative to the working directory,
// as Firecracker resolves it), read-only or not as configured.
func (d *drive) open() error {
	if d.PathOnHost == "" {
		return nil
	}
	flag := os.O_RDWR
	if d.IsReadOnly != nil && *d.IsReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(d.PathOnHost, flag, 0)
	if err != nil {
		return err
	}
	d.file = f
	return nil
}

type netIface struct {
	ID          string `json:"iface_id"`
	HostDevName string `json:"host_dev_name"`
	GuestMAC    string `json:"guest_mac,omitempty"`
	raw         json.RawMessage
}

type bootSource struct {
	KernelImagePath string `json:"kernel_image_path"`
	InitrdPath      string `json:"initrd_path,omitempty"`
	BootArgs        string `json:"boot_args,omitempty"`
}

type machineConfig struct {
	VcpuCount       int    `json:"vcpu_count"`
	MemSizeMib      int    `json:"mem_size_mib"`
	SMT             bool   `json:"smt"`
	TrackDirtyPages bool   `json:"track_dirty_pages"`
	HugePages       string `json:"huge_pages"`
	CPUTemplate     string `json:"cpu_template,omitempty"`
}

// machine is the fake microVM: its configuration, its state and its
// outputs. One mutex serialises API requests, as Firecracker handles them
// one at a time.
type machine struct {
	mu      sync.Mutex
	args    args
	knobs   knobs
	spec    *apispec.Spec
	console io.Writer
	stderr  io.Writer

	state      string // "Not started", "Running", "Paused"
	boot       *bootSource
	bootRaw    json.RawMessage
	config     machineConfig
	drives     []*drive
	ifaces     []*netIface
	vsockRaw   json.RawMessage
	vsockPath  string
	vsockLn    net.Listener
	loggerRaw  json.RawMessage
	metricsRaw json.RawMessage
	mmds       json.RawMessage

	log     *logger
	metrics *metricsWriter
	stats   *stats
	started time.Time
}

func newMachine(a args, k knobs, spec *apispec.Spec, console, stderr io.Writer) *machine {
	return &machine{
		args:    a,
		knobs:   k,
		spec:    spec,
		console: console,
		stderr:  stderr,
		state:   "Not started",
		config:  machineConfig{VcpuCount: 1, MemSizeMib: 128, HugePages: "None"},
		log:     &logger{id: a.id, level: levelInfo},
		stats:   newStats(),
		started: time.Now(),
	}
}

// exit ends the process, removing the API socket as Firecracker does when
// it exits by itself. Callers may hold m.mu.
func (m *machine) exit(code int) {
	// The listener stays open: closing it would end Serve, and main would
	// race this exit with its own.
	_ = os.Remove(m.args.apiSock)
	m.log.printf(levelInfo, "main", "Firecracker exiting %s. exit_code=%d", map[bool]string{true: "successfully", false: "with error"}[code == 0], code)
	m.log.close()
	os.Exit(code)
}

// reply is an API response.
type reply struct {
	status int
	body   any // nil for none
}

func fault(msg string) reply {
	return reply{status: http.StatusBadRequest, body: map[string]string{"fault_message": msg}}
}

var noContent = reply{status: http.StatusNoContent}

func (m *machine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	var rep reply
	switch {
	case err != nil:
		rep = fault(fmt.Sprintf("Reading the request body failed: %v", err))
	case len(body) > maxBody:
		rep = fault(fmt.Sprintf("Request payload with size %d is larger than the limit of %d allowed by server.", len(body), maxBody))
	default:
		rep = m.handle(r.Context(), r.Method, r.URL.Path, body)
	}
	if rep.body == nil {
		w.WriteHeader(rep.status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	_ = json.NewEncoder(w).Encode(rep.body)
}

// handle answers one request, recording it.
func (m *machine) handle(ctx context.Context, method, path string, body []byte) reply {
	m.mu.Lock()
	defer m.mu.Unlock()
	action := actionType(path, body)
	if m.knobs.dieOn != "" && m.matches(m.knobs.dieOn, method, path, action) {
		m.record(method, path, body, 0)
		fmt.Fprintf(m.stderr, "fake firecracker: dying on %s %s (FAKE_FC_DIE_ON=%s)\n", method, path, m.knobs.dieOn)
		m.log.printf(levelError, "fc_api", "Dying on %s %s (FAKE_FC_DIE_ON).", method, path)
		m.exit(1)
	}
	m.log.printf(levelInfo, "fc_api", "The API server received a %s request on %q with body %q.", titleCase(method), path, string(body))
	rep, op := m.dispatch(ctx, method, path, body, action)
	if rep.status >= 400 {
		msg := ""
		if b, ok := rep.body.(map[string]string); ok {
			msg = b["fault_message"]
		}
		m.log.printf(levelError, "fc_api", "Received Error. Status code: %d %s. Message: %s", rep.status, http.StatusText(rep.status), msg)
	}
	m.count(method, op, rep.status)
	m.record(method, path, body, rep.status)
	return rep
}

func (m *machine) dispatch(ctx context.Context, method, path string, body []byte, action string) (reply, string) {
	if err := m.spec.Validate(ctx, method, path, body); err != nil {
		return fault(err.Error()), ""
	}
	op, err := m.spec.Lookup(method, path)
	if err != nil { // Validate found it; this cannot happen
		return fault(err.Error()), ""
	}
	if op.HasBody && len(bytes.TrimSpace(body)) == 0 && (method == http.MethodPut || method == http.MethodPatch) {
		return fault(fmt.Sprintf("Empty %s request.", method)), op.ID
	}
	extra, err := m.spec.UndeclaredFields(method, path, body)
	if err != nil {
		return fault(err.Error()), op.ID
	}
	if len(extra) > 0 {
		return fault(fmt.Sprintf("An error occurred when deserializing the json body of a request: unknown field `%s` (the API description of %s %s declares no such field).",
			strings.Join(extra, "`, `"), method, op.Template)), op.ID
	}
	if m.knobs.failOn != "" && m.matches(m.knobs.failOn, method, path, action) {
		return fault(m.knobs.failMessage), op.ID
	}
	ph, ok := phases[op.ID]
	if op.ID == "createSyncAction" {
		ph, ok = actionPhases[action]
	}
	if !ok {
		return fault(fmt.Sprintf("fake firecracker: %s %s (%s) is not classified as pre- or post-boot", method, path, op.ID)), op.ID
	}
	booted := m.state != "Not started"
	if ph == preBoot && booted {
		return fault(errPostBoot), op.ID
	}
	if ph == postBoot && !booted {
		return fault(errPreBoot), op.ID
	}
	return m.apply(op, body, action), op.ID
}

// matches reports whether a request is the one a knob names: by action
// type, path, path without its slash, or path template.
func (m *machine) matches(target, method, path, action string) bool {
	if target == path || "/"+target == path || (action != "" && target == action) {
		return true
	}
	if op, err := m.spec.Lookup(method, path); err == nil && op.Template == target {
		return true
	}
	return false
}

func actionType(path string, body []byte) string {
	if path != "/actions" {
		return ""
	}
	var a struct {
		ActionType string `json:"action_type"`
	}
	_ = json.Unmarshal(body, &a)
	return a.ActionType
}

func titleCase(method string) string {
	if method == "" {
		return method
	}
	return method[:1] + strings.ToLower(method[1:])
}

// apply carries out a valid request allowed in the current state.
func (m *machine) apply(op *apispec.Operation, body []byte, action string) reply {
	switch op.ID {
	case "describeInstance":
		return reply{status: http.StatusOK, body: map[string]string{
			"id": m.args.id, "state": m.state, "vmm_version": version, "app_name": "Firecracker",
		}}
	case "getFirecrackerVersion":
		return reply{status: http.StatusOK, body: map[string]string{"firecracker_version": version}}
	case "getMachineConfiguration":
		return reply{status: http.StatusOK, body: m.config}
	case "getExportVmConfig":
		return reply{status: http.StatusOK, body: m.fullConfig()}
	case "getMmds":
		if m.mmds == nil {
			return reply{status: http.StatusOK, body: map[string]any{}}
		}
		return reply{status: http.StatusOK, body: m.mmds}
	case "putMmds", "patchMmds":
		m.mmds = append(json.RawMessage(nil), body...)
		return noContent
	case "putLogger":
		return m.putLogger(body)
	case "putMetrics":
		return m.putMetrics(body)
	case "putMachineConfiguration":
		c := machineConfig{HugePages: "None"}
		if len(body) > 0 {
			_ = json.Unmarshal(body, &c)
		}
		m.config = c
		return noContent
	case "patchMachineConfiguration":
		c := m.config
		_ = json.Unmarshal(body, &c)
		m.config = c
		return noContent
	case "putGuestBootSource":
		return m.putBootSource(body)
	case "putGuestDriveByID":
		return m.putDrive(op.PathParams["drive_id"], body)
	case "putGuestNetworkInterfaceByID":
		return m.putIface(op.PathParams["iface_id"], body)
	case "putGuestVsock":
		return m.putVsock(body)
	case "patchVm":
		var v struct{ State string }
		_ = json.Unmarshal(body, &v)
		if v.State == "Paused" {
			m.state = "Paused"
		} else {
			m.state = "Running"
		}
		return noContent
	case "createSnapshot":
		return m.createSnapshot(body)
	case "loadSnapshot":
		return m.loadSnapshot(body)
	case "createSyncAction":
		switch action {
		case "InstanceStart":
			return m.instanceStart()
		case "FlushMetrics":
			if m.metrics != nil {
				if err := m.metrics.write(m.metricsLine()); err != nil {
					return fault(fmt.Sprintf("Metrics error: Failed to write metrics: %v", err))
				}
			}
			return noContent
		case "SendCtrlAltDel":
			m.log.printf(levelInfo, "fc_api", "Sending CTRL+ALT+DEL to the guest.")
			if !m.knobs.ignoreCAD {
				go m.rebootSoon()
			}
			return noContent
		}
	}
	if op.Method == http.MethodGet {
		return fault(fmt.Sprintf("fake firecracker: GET %s is not implemented", op.Template))
	}
	return noContent
}

func (m *machine) putLogger(body []byte) reply {
	var c struct {
		Level         string `json:"level"`
		LogPath       string `json:"log_path"`
		ShowLevel     bool   `json:"show_level"`
		ShowLogOrigin bool   `json:"show_log_origin"`
	}
	_ = json.Unmarshal(body, &c)
	if c.LogPath != "" {
		// Firecracker opens the file (or FIFO) it is given; it does not
		// create it.
		f, err := os.OpenFile(c.LogPath, os.O_WRONLY|os.O_APPEND|syscall.O_NONBLOCK, 0)
		if err != nil {
			return fault(fmt.Sprintf("Logger error: Failed to open target file: %s", osError(err)))
		}
		m.log.setFile(f)
	}
	if c.Level != "" {
		m.log.level = parseLevel(c.Level)
	}
	m.log.showLevel = c.ShowLevel
	m.loggerRaw = append(json.RawMessage(nil), body...)
	m.log.printf(levelInfo, "main", "Running Firecracker v%s", version)
	return noContent
}

func (m *machine) putMetrics(body []byte) reply {
	if m.metrics != nil {
		return fault(errMetricsReinit)
	}
	var c struct {
		MetricsPath string            `json:"metrics_path"`
		EmitID      bool              `json:"emit_id"`
		Properties  map[string]string `json:"properties"`
	}
	_ = json.Unmarshal(body, &c)
	f, err := os.OpenFile(c.MetricsPath, os.O_WRONLY|os.O_APPEND|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fault("Metrics error: " + osError(err))
	}
	m.metrics = &metricsWriter{f: f, emitID: c.EmitID, properties: c.Properties}
	m.metricsRaw = append(json.RawMessage(nil), body...)
	go m.metricsLoop()
	return noContent
}

func (m *machine) metricsLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for range t.C {
		m.mu.Lock()
		if m.state == "Running" {
			m.stats.simulateTraffic(m.drives, m.ifaces)
		}
		if err := m.metrics.write(m.metricsLine()); err != nil {
			m.log.printf(levelError, "fc_vmm", "Failed to write metrics: %v", err)
		}
		m.mu.Unlock()
	}
}

func (m *machine) putBootSource(body []byte) reply {
	var b bootSource
	_ = json.Unmarshal(body, &b)
	if err := canOpen(b.KernelImagePath, os.O_RDONLY); err != nil {
		return fault("Boot source error: The kernel file cannot be opened: " + osError(err))
	}
	if b.InitrdPath != "" {
		if err := canOpen(b.InitrdPath, os.O_RDONLY); err != nil {
			return fault("Boot source error: The initrd file cannot be opened due to invalid path or invalid permissions. " + osError(err))
		}
	}
	m.boot = &b
	m.bootRaw = append(json.RawMessage(nil), body...)
	return noContent
}

func (m *machine) putDrive(pathID string, body []byte) reply {
	var d drive
	_ = json.Unmarshal(body, &d)
	if d.ID != pathID {
		return fault(fmt.Sprintf("The id from the path [%s] does not match the id from the body [%s]!", pathID, d.ID))
	}
	if d.IsRootDevice {
		for _, o := range m.drives {
			if o.IsRootDevice && o.ID != d.ID {
				return fault("Drive config error: A root block device already exists!")
			}
		}
	}
	if err := d.open(); err != nil {
		return fault(fmt.Sprintf("Drive config error: Unable to create the virtio block device: BackingFile(%s, %q)", osError(err), d.PathOnHost))
	}
	d.raw = append(json.RawMessage(nil), body...)
	for i, o := range m.drives {
		if o.ID == d.ID {
			if o.file != nil {
				o.file.Close()
			}
			m.drives[i] = &d
			return noContent
		}
	}
	m.drives = append(m.drives, &d)
	return noContent
}

func (m *machine) putIface(pathID string, body []byte) reply {
	var n netIface
	_ = json.Unmarshal(body, &n)
	if n.ID != pathID {
		return fault(fmt.Sprintf("The id from the path [%s] does not match the id from the body [%s]!", pathID, n.ID))
	}
	if n.GuestMAC != "" {
		if hw, err := net.ParseMAC(n.GuestMAC); err != nil || len(hw) != 6 {
			return fault(fmt.Sprintf("An error occurred when deserializing the json body of a request: invalid MAC address %q.", n.GuestMAC))
		}
	}
	for _, o := range m.ifaces {
		if o.ID != n.ID && o.HostDevName == n.HostDevName {
			return fault(fmt.Sprintf("Network config error: The host device name %s is already in use.", n.HostDevName))
		}
		if o.ID != n.ID && n.GuestMAC != "" && strings.EqualFold(o.GuestMAC, n.GuestMAC) {
			return fault(fmt.Sprintf("Network config error: The MAC address is already in use: %s", n.GuestMAC))
		}
	}
	n.raw = append(json.RawMessage(nil), body...)
	for i, o := range m.ifaces {
		if o.ID == n.ID {
			m.ifaces[i] = &n
			return noContent
		}
	}
	m.ifaces = append(m.ifaces, &n)
	return noContent
}

// putVsock binds the vsock's Unix socket, as Firecracker does when the
// device is configured: the path must not exist. Host-initiated
// connections ("CONNECT <port>\n") find no guest listening and are closed.
func (m *machine) putVsock(body []byte) reply {
	var v struct {
		UDSPath string `json:"uds_path"`
	}
	_ = json.Unmarshal(body, &v)
	if m.vsockLn != nil {
		_ = m.vsockLn.Close()
		if err := os.Remove(m.vsockPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fault(fmt.Sprintf("Vsock config error: Cannot create backend for vsock device: UnixBind(%s)", osError(err)))
		}
		m.vsockLn = nil
	}
	ln, err := net.Listen("unix", v.UDSPath)
	if err != nil {
		return fault(fmt.Sprintf("Vsock config error: Cannot create backend for vsock device: UnixBind(%s)", osError(err)))
	}
	// Firecracker leaves the socket file behind when it exits; so does the
	// fake.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	m.vsockLn, m.vsockPath = ln, v.UDSPath
	m.vsockRaw = append(json.RawMessage(nil), body...)
	go serveVsock(ln)
	return noContent
}

func serveVsock(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			_, _ = c.Read(buf) // "CONNECT <port>\n": no guest is there to accept it
		}()
	}
}

// savedMachine is what the fake's snapshot file holds: the configuration
// a load brings back.
type savedMachine struct {
	Config  machineConfig     `json:"machine_config"`
	Boot    json.RawMessage   `json:"boot"`
	Drives  []json.RawMessage `json:"drives"`
	Ifaces  []json.RawMessage `json:"ifaces"`
	Vsock   json.RawMessage   `json:"vsock"`
	Version string            `json:"version"`
}

// createSnapshot writes the state file (the configuration, as JSON) and a
// sparse memory file of the guest's size, as Firecracker refuses a VM
// that is not paused.
func (m *machine) createSnapshot(body []byte) reply {
	var p struct {
		MemFilePath  string `json:"mem_file_path"`
		SnapshotPath string `json:"snapshot_path"`
		SnapshotType string `json:"snapshot_type"`
	}
	_ = json.Unmarshal(body, &p)
	if m.state != "Paused" {
		return fault("Create snapshot error: Cannot save the microVM state: the microVM is not paused")
	}
	if p.SnapshotType == "Diff" {
		return fault("Create snapshot error: Diff snapshots are not enabled (track_dirty_pages)")
	}
	saved := savedMachine{Config: m.config, Boot: m.bootRaw, Vsock: m.vsockRaw, Version: version}
	for _, d := range m.drives {
		saved.Drives = append(saved.Drives, d.raw)
	}
	for _, n := range m.ifaces {
		saved.Ifaces = append(saved.Ifaces, n.raw)
	}
	b, _ := json.Marshal(saved)
	if err := os.WriteFile(p.SnapshotPath, b, 0o600); err != nil {
		return fault(fmt.Sprintf("Create snapshot error: Cannot write the microVM state: %s", osError(err)))
	}
	f, err := os.OpenFile(p.MemFilePath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err == nil {
		err = f.Truncate(int64(m.config.MemSizeMib) << 20)
		f.Close()
	}
	if err != nil {
		return fault(fmt.Sprintf("Create snapshot error: Cannot write the guest memory: %s", osError(err)))
	}
	return noContent
}

// loadSnapshot brings a saved configuration back into a fresh process,
// with the network and vsock overrides applied, running if asked.
func (m *machine) loadSnapshot(body []byte) reply {
	var p struct {
		SnapshotPath string `json:"snapshot_path"`
		MemFilePath  string `json:"mem_file_path"`
		MemBackend   *struct {
			BackendType string `json:"backend_type"`
			BackendPath string `json:"backend_path"`
		} `json:"mem_backend"`
		ResumeVM         bool `json:"resume_vm"`
		NetworkOverrides []struct {
			IfaceID     string `json:"iface_id"`
			HostDevName string `json:"host_dev_name"`
		} `json:"network_overrides"`
		VsockOverride *struct {
			UDSPath string `json:"uds_path"`
		} `json:"vsock_override"`
	}
	_ = json.Unmarshal(body, &p)
	if m.boot != nil || len(m.drives) > 0 || len(m.ifaces) > 0 || m.vsockLn != nil {
		return fault("Load snapshot error: Loading a microVM snapshot not allowed after configuring boot-specific resources.")
	}
	mem := p.MemFilePath
	if p.MemBackend != nil {
		if mem != "" {
			return fault("Load snapshot error: mem_file_path and mem_backend are mutually exclusive")
		}
		mem = p.MemBackend.BackendPath
	}
	if mem == "" {
		return fault("Load snapshot error: missing field: either mem_backend or mem_file_path is required")
	}
	raw, err := os.ReadFile(p.SnapshotPath)
	if err != nil {
		return fault(fmt.Sprintf("Load snapshot error: Failed to open the snapshot file: %s", osError(err)))
	}
	if _, err := os.Stat(mem); err != nil {
		return fault(fmt.Sprintf("Load snapshot error: Failed to open the memory file: %s", osError(err)))
	}
	var saved savedMachine
	if err := json.Unmarshal(raw, &saved); err != nil {
		return fault("Load snapshot error: the snapshot file is not one this Firecracker wrote")
	}
	m.config, m.bootRaw = saved.Config, saved.Boot
	for _, d := range saved.Drives {
		var dr drive
		_ = json.Unmarshal(d, &dr)
		dr.raw = d
		// Firecracker reopens every drive at the path it was saved with.
		if err := dr.open(); err != nil {
			return fault(fmt.Sprintf("Load snapshot error: Failed to restore microVM state: Block(BackingFile(%s, %q))", osError(err), dr.PathOnHost))
		}
		m.drives = append(m.drives, &dr)
	}
	for _, n := range saved.Ifaces {
		var ni netIface
		_ = json.Unmarshal(n, &ni)
		ni.raw = n
		m.ifaces = append(m.ifaces, &ni)
	}
	for _, o := range p.NetworkOverrides {
		found := false
		for _, ni := range m.ifaces {
			if ni.ID == o.IfaceID {
				ni.HostDevName, found = o.HostDevName, true
			}
		}
		if !found {
			return fault(fmt.Sprintf("Load snapshot error: the snapshot has no network interface %q to override", o.IfaceID))
		}
	}
	if saved.Vsock != nil {
		vs := saved.Vsock
		if p.VsockOverride != nil {
			vs, _ = json.Marshal(map[string]any{"guest_cid": 3, "uds_path": p.VsockOverride.UDSPath})
		}
		if rep := m.putVsock(vs); rep.status >= 400 {
			return rep
		}
	}
	m.state = "Paused"
	if p.ResumeVM {
		m.state = "Running"
	}
	return noContent
}

func (m *machine) instanceStart() reply {
	if m.boot == nil {
		return fault(errNoKernel)
	}
	m.state = "Running"
	m.log.printf(levelInfo, "fc_api", "Successfully started microvm that was configured from the API.")
	m.printConsole()
	return noContent
}

// printConsole writes boot-like lines to the serial console (stdout).
func (m *machine) printConsole() {
	lines := []string{
		fmt.Sprintf("Linux version 6.1.0-fakefirecracker (banger test double for Firecracker v%s) #1 SMP", version),
		"Command line: " + m.boot.BootArgs,
		fmt.Sprintf("microVM %s: %d vCPUs, %d MiB of memory", m.args.id, m.config.VcpuCount, m.config.MemSizeMib),
		"Kernel: " + m.boot.KernelImagePath,
	}
	if m.boot.InitrdPath != "" {
		lines = append(lines, "Trying to unpack rootfs image as initramfs: "+m.boot.InitrdPath)
	}
	for i, d := range m.drives {
		ro := "rw"
		if d.IsReadOnly != nil && *d.IsReadOnly {
			ro = "ro"
		}
		lines = append(lines, fmt.Sprintf("virtio_blk virtio%d: [vd%c] drive %s (%s) backed by %s", i, 'a'+i, d.ID, ro, d.PathOnHost))
	}
	for i, n := range m.ifaces {
		lines = append(lines, fmt.Sprintf("virtio_net virtio%d eth%d: %s (%s) on host tap %s", len(m.drives)+i, i, n.ID, n.GuestMAC, n.HostDevName))
	}
	if m.vsockPath != "" {
		lines = append(lines, "NET: Registered PF_VSOCK protocol family")
	}
	lines = append(lines, "Run /init as init process")
	for i, l := range lines {
		fmt.Fprintf(m.console, "[%5d.%06d] %s\n", 0, i*1371, l)
	}
}

// rebootSoon is the guest answering Ctrl-Alt-Del: it reboots, and a
// Firecracker guest that reboots ends the VMM.
func (m *machine) rebootSoon() {
	time.Sleep(200 * time.Millisecond)
	m.mu.Lock()
	fmt.Fprintf(m.console, "[%5d.%06d] reboot: Restarting system\n", int(time.Since(m.started).Seconds()), 0)
	m.log.printf(levelInfo, "fc_vcpu 0", "Received KVM_EXIT_SHUTDOWN signal")
	m.log.printf(levelInfo, "main", "Vmm is stopping.")
	if m.metrics != nil {
		_ = m.metrics.write(m.metricsLine())
	}
	m.exit(0)
}

func (m *machine) fullConfig() map[string]any {
	out := map[string]any{"machine-config": m.config}
	if m.bootRaw != nil {
		out["boot-source"] = m.bootRaw
	}
	drives := []json.RawMessage{}
	for _, d := range m.drives {
		drives = append(drives, d.raw)
	}
	out["drives"] = drives
	ifaces := []json.RawMessage{}
	for _, n := range m.ifaces {
		ifaces = append(ifaces, n.raw)
	}
	out["network-interfaces"] = ifaces
	for k, v := range map[string]json.RawMessage{"vsock": m.vsockRaw, "logger": m.loggerRaw, "metrics": m.metricsRaw} {
		if v != nil {
			out[k] = v
		}
	}
	return out
}

// record appends one request to FAKE_FC_RECORD.
func (m *machine) record(method, path string, body []byte, status int) {
	if m.knobs.record == "" {
		return
	}
	var b json.RawMessage
	switch {
	case len(bytes.TrimSpace(body)) == 0:
		b = json.RawMessage("null")
	case json.Valid(body):
		b = body
	default:
		s, _ := json.Marshal(string(body))
		b = s
	}
	line, err := json.Marshal(struct {
		Method string          `json:"method"`
		Path   string          `json:"path"`
		Body   json.RawMessage `json:"body"`
		Status int             `json:"status"`
	}{method, path, b, status})
	if err != nil {
		fmt.Fprintf(m.stderr, "fake firecracker: recording a request: %v\n", err)
		return
	}
	f := m.knobs.recordFile
	if f == nil {
		var err error
		if f, err = os.OpenFile(m.knobs.record, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err != nil {
			fmt.Fprintf(m.stderr, "fake firecracker: recording a request: %v\n", err)
			return
		}
		defer f.Close()
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		fmt.Fprintf(m.stderr, "fake firecracker: recording a request: %v\n", err)
	}
}

func canOpen(path string, flag int) error {
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// osError renders an error the way Rust's io::Error displays:
// "No such file or directory (os error 2)".
func osError(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		return fmt.Sprintf("%s%s (os error %d)", strings.ToUpper(s[:1]), s[1:], int(errno))
	}
	return err.Error()
}

// sortedKeys is for deterministic output.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
