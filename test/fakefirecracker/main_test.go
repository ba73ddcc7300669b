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
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/vmm/firecracker/apispec"
	"github.com/banger-dev/banger/internal/vmm/firecracker/fctest"
)

var fakeBin string

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	bin, remove, err := fctest.BuildTemp(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fakeBin = bin
	code := m.Run()
	remove()
	os.Exit(code)
}

// fc is one running fake.
type fc struct {
	t       *testing.T
	dir     string
	sock    string
	console string
	record  string
	cmd     *exec.Cmd
	stderr  *bytes.Buffer
	done    chan struct{}
	client  *http.Client
}

// start runs the fake in a fresh directory with extra environment.
func start(t *testing.T, env ...string) *fc {
	t.Helper()
	dir := t.TempDir()
	f := &fc{
		t:       t,
		dir:     dir,
		sock:    filepath.Join(dir, "api.sock"),
		console: filepath.Join(dir, "console.log"),
		record:  filepath.Join(dir, "record.jsonl"),
		stderr:  &bytes.Buffer{},
		done:    make(chan struct{}),
	}
	out, err := os.Create(f.console)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	f.cmd = exec.Command(fakeBin, "--api-sock", f.sock, "--id", "vm-test-1")
	f.cmd.Env = append(os.Environ(), append([]string{fctest.EnvRecord + "=" + f.record}, env...)...)
	f.cmd.Stdout, f.cmd.Stderr = out, f.stderr
	// The fake is started from a directory outside the module: it must
	// find the API description through the path built into it.
	f.cmd.Dir = dir
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = f.cmd.Wait(); close(f.done) }()
	t.Cleanup(func() {
		_ = f.cmd.Process.Kill()
		<-f.done
	})
	f.client = &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", f.sock)
		}},
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", f.sock); err == nil {
			c.Close()
			return f
		}
		select {
		case <-f.done:
			t.Fatalf("the fake exited at start-up: %v: %s", f.cmd.ProcessState, f.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fake's API socket did not appear: %s", f.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// do sends one request and returns the status, the fault message (for
// errors) and the body.
func (f *fc) do(method, path, body string) (int, string, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://localhost"+path, rd)
	if err != nil {
		return 0, "", nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", nil, err
	}
	var e struct {
		FaultMessage string `json:"fault_message"`
	}
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(b, &e); err != nil {
			return resp.StatusCode, "", b, fmt.Errorf("error body %q is not {fault_message}: %w", b, err)
		}
	}
	return resp.StatusCode, e.FaultMessage, b, nil
}

// must sends a request that must get want.
func (f *fc) must(want int, method, path, body string) []byte {
	f.t.Helper()
	st, msg, b, err := f.do(method, path, body)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	if st != want {
		f.t.Fatalf("%s %s %s: status %d (%s), want %d", method, path, body, st, msg, want)
	}
	return b
}

// fault sends a request that must fail with 400 and returns its message.
func (f *fc) fault(method, path, body string) string {
	f.t.Helper()
	st, msg, _, err := f.do(method, path, body)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	if st != http.StatusBadRequest || msg == "" {
		f.t.Fatalf("%s %s %s: status %d, fault %q; want 400 with a fault_message", method, path, body, st, msg)
	}
	return msg
}

func (f *fc) waitExit(within time.Duration) int {
	f.t.Helper()
	select {
	case <-f.done:
		return f.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		f.t.Fatalf("the fake still runs after %v", within)
		return -1
	}
}

func (f *fc) alive() bool {
	select {
	case <-f.done:
		return false
	default:
		return true
	}
}

// file creates an empty file in the fake's directory.
func (f *fc) file(name string) string {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type bootFiles struct {
	kernel, initrd, root, work, log, metrics, vsock string
}

// configure sends the pre-boot sequence banger's driver sends.
func (f *fc) configure() bootFiles {
	f.t.Helper()
	b := bootFiles{
		kernel: f.file("vmlinux"), initrd: f.file("initrd.img"), root: f.file("root.ext4"),
		work: f.file("work.ext4"), log: f.file("firecracker.log"), metrics: f.file("metrics.json"),
		vsock: filepath.Join(f.dir, "vsock.sock"),
	}
	for _, r := range []struct{ path, body string }{
		{"/logger", fmt.Sprintf(`{"log_path":%q,"level":"Info"}`, b.log)},
		{"/metrics", fmt.Sprintf(`{"metrics_path":%q}`, b.metrics)},
		{"/machine-config", `{"vcpu_count":2,"mem_size_mib":512}`},
		{"/boot-source", fmt.Sprintf(`{"kernel_image_path":%q,"initrd_path":%q,"boot_args":"console=ttyS0 reboot=k panic=1 banger.marker=42"}`, b.kernel, b.initrd)},
		{"/drives/rootfs", fmt.Sprintf(`{"drive_id":"rootfs","path_on_host":%q,"is_root_device":true,"is_read_only":true}`, b.root)},
		{"/drives/work", fmt.Sprintf(`{"drive_id":"work","path_on_host":%q,"is_root_device":false,"is_read_only":false}`, b.work)},
		{"/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"bgtap7","guest_mac":"02:bd:0a:00:00:07"}`},
		{"/vsock", fmt.Sprintf(`{"guest_cid":3,"uds_path":%q}`, b.vsock)},
	} {
		f.must(http.StatusNoContent, "PUT", r.path, r.body)
	}
	return b
}

func (f *fc) boot() bootFiles {
	f.t.Helper()
	b := f.configure()
	f.must(http.StatusNoContent, "PUT", "/actions", `{"action_type":"InstanceStart"}`)
	return b
}

func instanceState(t *testing.T, f *fc) map[string]string {
	t.Helper()
	var info map[string]string
	if err := json.Unmarshal(f.must(http.StatusOK, "GET", "/", ""), &info); err != nil {
		t.Fatal(err)
	}
	return info
}

func TestFullBootSequence(t *testing.T) {
	f := start(t)
	info := instanceState(t, f)
	if info["state"] != "Not started" || info["id"] != "vm-test-1" || info["vmm_version"] != "1.17.0-dev" || info["app_name"] != "Firecracker" {
		t.Fatalf("GET / before boot = %v", info)
	}
	b := f.boot()
	if info := instanceState(t, f); info["state"] != "Running" {
		t.Fatalf("GET / after boot = %v", info)
	}

	console := read(t, f.console)
	for _, w := range []string{"Command line: console=ttyS0 reboot=k panic=1 banger.marker=42", "rootfs", "work", "02:bd:0a:00:00:07", "Run /init"} {
		if !strings.Contains(console, w) {
			t.Errorf("console lacks %q:\n%s", w, console)
		}
	}
	if logText := read(t, b.log); !strings.Contains(logText, `[vm-test-1:fc_api] The API server received a Put request on "/actions"`) {
		t.Errorf("log file lacks the InstanceStart request:\n%s", logText)
	}

	// The vsock's Unix socket is bound, as Firecracker binds it.
	c, err := net.Dial("unix", b.vsock)
	if err != nil {
		t.Fatalf("vsock socket: %v", err)
	}
	c.Close()

	// Metrics: one line a second, and one per FlushMetrics, each a JSON
	// object in Firecracker's layout.
	f.must(http.StatusNoContent, "PUT", "/actions", `{"action_type":"FlushMetrics"}`)
	deadline := time.Now().Add(5 * time.Second)
	var lines []string
	for {
		lines = strings.Split(strings.TrimSpace(read(t, b.metrics)), "\n")
		if len(lines) >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(lines) < 3 {
		t.Fatalf("metrics file has %d lines after FlushMetrics and 2+ seconds:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	var sawTraffic bool
	for _, l := range lines {
		if !strings.HasPrefix(l, `{"utc_timestamp_ms":`) {
			t.Errorf("metrics line does not start with the timestamp: %.80s", l)
		}
		var mt struct {
			UTC        int64             `json:"utc_timestamp_ms"`
			Net        map[string]any    `json:"net"`
			NetEth0    map[string]any    `json:"net_eth0"`
			Block      map[string]any    `json:"block"`
			BlockRoot  map[string]any    `json:"block_rootfs"`
			Vcpu       map[string]any    `json:"vcpu"`
			PutAPI     map[string]uint64 `json:"put_api_requests"`
			APIServer  map[string]uint64 `json:"api_server"`
			Uart       map[string]uint64 `json:"uart"`
			BlockWork  map[string]any    `json:"block_work"`
			Signals    map[string]uint64 `json:"signals"`
			LoggerMets map[string]uint64 `json:"logger"`
		}
		if err := json.Unmarshal([]byte(l), &mt); err != nil {
			t.Fatalf("metrics line is not JSON: %v: %s", err, l)
		}
		if mt.UTC < time.Now().Add(-time.Minute).UnixMilli() || mt.Net == nil || mt.NetEth0 == nil || mt.Block == nil ||
			mt.BlockRoot == nil || mt.BlockWork == nil || mt.Vcpu == nil || mt.PutAPI == nil || mt.Uart == nil || mt.Signals == nil || mt.LoggerMets == nil {
			t.Fatalf("metrics line lacks Firecracker's fields: %s", l)
		}
		for _, k := range []string{"rx_bytes_count", "tx_bytes_count", "rx_packets_count", "tx_packets_count"} {
			if _, ok := mt.Net[k]; !ok {
				t.Fatalf("net metrics lack %s: %s", k, l)
			}
		}
		for _, k := range []string{"read_bytes", "write_bytes", "read_count", "write_count"} {
			if _, ok := mt.Block[k]; !ok {
				t.Fatalf("block metrics lack %s: %s", k, l)
			}
		}
		if n, _ := mt.Net["rx_bytes_count"].(float64); n > 0 {
			sawTraffic = true
		}
	}
	if !sawTraffic {
		t.Errorf("no metrics line shows network traffic of the running guest:\n%s", strings.Join(lines, "\n"))
	}

	// GET /vm/config reflects what was configured.
	var cfg struct {
		Drives  []map[string]any `json:"drives"`
		Machine map[string]any   `json:"machine-config"`
	}
	if err := json.Unmarshal(f.must(http.StatusOK, "GET", "/vm/config", ""), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Drives) != 2 || cfg.Machine["vcpu_count"] != float64(2) || cfg.Machine["mem_size_mib"] != float64(512) {
		t.Errorf("GET /vm/config = %+v", cfg)
	}

	// The record holds every request, in order, with its status.
	rec, err := fctest.ReadRecord(f.record)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rec {
		got = append(got, fmt.Sprintf("%s %s %d", r.Method, r.Path, r.Status))
	}
	want := []string{"GET / 200", "PUT /logger 204", "PUT /metrics 204", "PUT /machine-config 204", "PUT /boot-source 204",
		"PUT /drives/rootfs 204", "PUT /drives/work 204", "PUT /network-interfaces/eth0 204", "PUT /vsock 204",
		"PUT /actions 204", "GET / 200", "PUT /actions 204", "GET /vm/config 200"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("record:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var mc map[string]int
	if err := json.Unmarshal(rec[3].Body, &mc); err != nil || mc["vcpu_count"] != 2 || mc["mem_size_mib"] != 512 {
		t.Fatalf("recorded machine-config body %s: %v", rec[3].Body, err)
	}
	if string(rec[0].Body) != "null" {
		t.Fatalf("recorded GET body %s, want null", rec[0].Body)
	}
}

func TestInvalidRequestsGetTheValidatorsMessage(t *testing.T) {
	f := start(t)
	kernel := f.file("vmlinux")
	for _, c := range []struct {
		name, method, path, body string
		want                     []string
	}{
		{"wrong type", "PUT", "/machine-config", `{"vcpu_count":"2","mem_size_mib":256}`, []string{"vcpu_count", "integer"}},
		{"missing field", "PUT", "/machine-config", `{"vcpu_count":2}`, []string{"mem_size_mib", "missing"}},
		{"bad enum", "PUT", "/actions", `{"action_type":"Reboot"}`, []string{"action_type", "InstanceStart"}},
		{"unknown path", "PUT", "/reboot", `{}`, []string{"/reboot", "no such path"}},
		{"wrong method", "POST", "/actions", `{"action_type":"InstanceStart"}`, []string{"POST"}},
		{"not JSON", "PUT", "/logger", `{"log_path":`, []string{"body"}},
		{"undeclared field", "PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":256,"mem_size_mb":256}`, []string{"unknown field `mem_size_mb`"}},
		{"empty PUT", "PUT", "/machine-config", ``, []string{"Empty PUT request."}},
		{"ids differ", "PUT", "/drives/rootfs", `{"drive_id":"root","is_root_device":true}`, []string{"[rootfs]", "[root]"}},
		{"no kernel file", "PUT", "/boot-source", `{"kernel_image_path":"/nonexistent/vmlinux"}`, []string{"kernel file cannot be opened", "No such file or directory (os error 2)"}},
		{"no initrd file", "PUT", "/boot-source", fmt.Sprintf(`{"kernel_image_path":%q,"initrd_path":"/nonexistent/initrd"}`, kernel), []string{"initrd file cannot be opened"}},
		{"no disk file", "PUT", "/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/nonexistent/root.ext4","is_root_device":true,"is_read_only":true}`, []string{"/nonexistent/root.ext4"}},
		{"metrics file missing", "PUT", "/metrics", `{"metrics_path":"/nonexistent/metrics"}`, []string{"Metrics error"}},
		{"log file missing", "PUT", "/logger", `{"log_path":"/nonexistent/log"}`, []string{"Logger error"}},
		{"bad MAC", "PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"02:bd"}`, []string{"MAC"}},
	} {
		msg := f.fault(c.method, c.path, c.body)
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: fault %q lacks %q", c.name, msg, w)
			}
		}
	}
	if !f.alive() {
		t.Fatal("the fake died on invalid requests")
	}
	rec, err := fctest.ReadRecord(f.record)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec) != 15 {
		t.Fatalf("record has %d requests, want 15", len(rec))
	}
	for _, r := range rec {
		if r.Status != http.StatusBadRequest {
			t.Errorf("recorded %s %s with status %d", r.Method, r.Path, r.Status)
		}
	}
	// A body that is not JSON is recorded as a JSON string.
	var s string
	if err := json.Unmarshal(rec[5].Body, &s); err != nil || s != `{"log_path":` {
		t.Errorf("recorded non-JSON body %s", rec[5].Body)
	}
}

func TestOrderingIsEnforced(t *testing.T) {
	f := start(t)
	// Before InstanceStart: runtime-only actions are refused.
	for _, a := range []string{"SendCtrlAltDel", "FlushMetrics"} {
		if msg := f.fault("PUT", "/actions", fmt.Sprintf(`{"action_type":%q}`, a)); msg != errPreBoot {
			t.Errorf("%s before boot: %q", a, msg)
		}
	}
	// InstanceStart without a boot source is refused like Firecracker does.
	if msg := f.fault("PUT", "/actions", `{"action_type":"InstanceStart"}`); msg != errNoKernel {
		t.Errorf("InstanceStart without boot-source: %q", msg)
	}
	b := f.boot()
	// After it: every pre-boot resource, and InstanceStart again.
	for _, r := range []struct{ path, body string }{
		{"/logger", fmt.Sprintf(`{"log_path":%q,"level":"Info"}`, b.log)},
		{"/metrics", fmt.Sprintf(`{"metrics_path":%q}`, b.metrics)},
		{"/machine-config", `{"vcpu_count":1,"mem_size_mib":256}`},
		{"/boot-source", fmt.Sprintf(`{"kernel_image_path":%q}`, b.kernel)},
		{"/drives/rootfs", fmt.Sprintf(`{"drive_id":"rootfs","path_on_host":%q,"is_root_device":true,"is_read_only":true}`, b.root)},
		{"/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"bgtap7","guest_mac":"02:bd:0a:00:00:07"}`},
		{"/vsock", fmt.Sprintf(`{"guest_cid":3,"uds_path":%q}`, filepath.Join(f.dir, "other.sock"))},
		{"/entropy", `{}`},
		{"/actions", `{"action_type":"InstanceStart"}`},
	} {
		if msg := f.fault("PUT", r.path, r.body); msg != errPostBoot {
			t.Errorf("PUT %s after boot: %q, want %q", r.path, msg, errPostBoot)
		}
	}
	if msg := f.fault("PATCH", "/machine-config", `{"vcpu_count":1,"mem_size_mib":256}`); msg != errPostBoot {
		t.Errorf("PATCH /machine-config after boot: %q", msg)
	}
	// What Firecracker allows at runtime still works.
	f.must(http.StatusNoContent, "PUT", "/actions", `{"action_type":"FlushMetrics"}`)
	f.must(http.StatusNoContent, "PATCH", "/drives/work", `{"drive_id":"work"}`)
	f.must(http.StatusNoContent, "PUT", "/mmds", `{"latest":{"x":"y"}}`)
	f.must(http.StatusNoContent, "PATCH", "/vm", `{"state":"Paused"}`)
	if s := instanceState(t, f)["state"]; s != "Paused" {
		t.Errorf("state after PATCH /vm Paused: %q", s)
	}
}

func TestOneRootDeviceAndMetricsOnce(t *testing.T) {
	f := start(t)
	b := f.configure()
	if msg := f.fault("PUT", "/drives/other", fmt.Sprintf(`{"drive_id":"other","path_on_host":%q,"is_root_device":true,"is_read_only":true}`, b.work)); !strings.Contains(msg, "root block device already exists") {
		t.Errorf("second root device: %q", msg)
	}
	// Reconfiguring the same drive is an update, not a second root.
	f.must(http.StatusNoContent, "PUT", "/drives/rootfs", fmt.Sprintf(`{"drive_id":"rootfs","path_on_host":%q,"is_root_device":true,"is_read_only":true}`, b.root))
	if msg := f.fault("PUT", "/metrics", fmt.Sprintf(`{"metrics_path":%q}`, b.metrics)); msg != errMetricsReinit {
		t.Errorf("second PUT /metrics: %q", msg)
	}
	// A vsock whose socket path already exists cannot be bound.
	if msg := f.fault("PUT", "/vsock", fmt.Sprintf(`{"guest_cid":3,"uds_path":%q}`, b.kernel)); !strings.Contains(msg, "Vsock config error") {
		t.Errorf("vsock over an existing file: %q", msg)
	}
}

func TestSendCtrlAltDelEndsTheProcess(t *testing.T) {
	f := start(t)
	f.boot()
	f.must(http.StatusNoContent, "PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`)
	if code := f.waitExit(3 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SendCtrlAltDel, want 0: %s", code, f.stderr)
	}
	if _, err := os.Stat(f.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("API socket still there after exit: %v", err)
	}
	if c := read(t, f.console); !strings.Contains(c, "reboot: Restarting system") {
		t.Errorf("console lacks the reboot:\n%s", c)
	}
}

func TestIgnoreCtrlAltDelKeepsRunning(t *testing.T) {
	f := start(t, fctest.EnvIgnoreCtrlAltDel+"=1")
	f.boot()
	f.must(http.StatusNoContent, "PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`)
	time.Sleep(700 * time.Millisecond)
	if !f.alive() {
		t.Fatal("the fake exited though told to ignore Ctrl-Alt-Del")
	}
	if s := instanceState(t, f)["state"]; s != "Running" {
		t.Fatalf("state %q", s)
	}
	// SIGTERM kills it (Firecracker does not handle it).
	if err := f.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	f.waitExit(3 * time.Second)
	if ws, ok := f.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Fatalf("after SIGTERM: %v", f.cmd.ProcessState)
	}
}

func TestDieOn(t *testing.T) {
	for _, c := range []struct{ knob, method, path, body string }{
		{"InstanceStart", "PUT", "/actions", `{"action_type":"InstanceStart"}`},
		{"/boot-source", "PUT", "/boot-source", `{"kernel_image_path":"/x"}`},
		{"drives/rootfs", "PUT", "/drives/rootfs", `{"drive_id":"rootfs","is_root_device":true}`},
		{"/network-interfaces/{iface_id}", "PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"t"}`},
	} {
		t.Run(c.knob, func(t *testing.T) {
			f := start(t, fctest.EnvDieOn+"="+c.knob)
			f.must(http.StatusOK, "GET", "/", "")
			if c.knob == "InstanceStart" {
				f.configure()
			}
			if st, msg, _, err := f.do(c.method, c.path, c.body); err == nil {
				t.Fatalf("%s %s answered %d %q; want the connection to drop", c.method, c.path, st, msg)
			}
			if code := f.waitExit(3 * time.Second); code != 1 {
				t.Fatalf("exit code %d, want 1", code)
			}
			rec, err := fctest.ReadRecord(f.record)
			if err != nil {
				t.Fatal(err)
			}
			last := rec[len(rec)-1]
			if last.Path != c.path || last.Status != 0 {
				t.Fatalf("last recorded request %+v; want %s with status 0", last, c.path)
			}
		})
	}
}

func TestFailOn(t *testing.T) {
	const msg = "Boot source error: The kernel file cannot be opened: Permission denied (os error 13)"
	f := start(t, fctest.EnvFailOn+"=/boot-source:"+msg)
	kernel := f.file("vmlinux")
	if got := f.fault("PUT", "/boot-source", fmt.Sprintf(`{"kernel_image_path":%q}`, kernel)); got != msg {
		t.Fatalf("fault %q, want %q", got, msg)
	}
	// An invalid request still gets the validator's message.
	if got := f.fault("PUT", "/boot-source", `{}`); !strings.Contains(got, "kernel_image_path") {
		t.Fatalf("invalid request under FAIL_ON: %q", got)
	}
	f.must(http.StatusNoContent, "PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":128}`)

	g := start(t, fctest.EnvFailOn+"=InstanceStart:Start microvm error: boom")
	g.configure()
	if got := g.fault("PUT", "/actions", `{"action_type":"InstanceStart"}`); got != "Start microvm error: boom" {
		t.Fatalf("fault %q", got)
	}
	if s := instanceState(t, g)["state"]; s != "Not started" {
		t.Fatalf("state after a failed InstanceStart: %q", s)
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	if err := os.WriteFile(sock, []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(fakeBin, "--api-sock", sock, "--id", "x")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the fake did not replace the stale socket")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestArguments(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	for _, argv := range [][]string{
		{"--api-sock", sock},
		{"--id", "x"},
		{"--api-sock", sock, "--id", "x", "--log-path", "/tmp/l"},
		{"--api-sock=" + sock, "--id", "x"},
		{"--api-sock", sock, "--id"},
		{"--api-sock", sock, "--id", "x", "--id", "y"},
		{"--api-sock", sock, "--id", "not valid!"},
		{"--api-sock", sock, "--id", "x", "--no-seccomp"},
	} {
		cmd := exec.Command(fakeBin, argv...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || stderr.Len() == 0 {
			t.Errorf("%q: %v, stderr %q; want exit 1 with an error", argv, err, stderr.String())
		}
		if _, err := os.Stat(sock); err == nil {
			t.Errorf("%q created the socket", argv)
		}
	}
	if _, err := parseArgs([]string{"--id", "vm-1", "--api-sock", "/s"}); err != nil {
		t.Errorf("valid arguments in either order: %v", err)
	}
	// What the jailer adds before the driver's arguments.
	jailed := []string{"--id", "vm-1", "--start-time-us", "1", "--start-time-cpu-us", "0", "--parent-cpu-time-us", "0", "--api-sock", "/s"}
	if _, err := parseArgs(jailed); err != nil {
		t.Errorf("the jailer's arguments: %v", err)
	}
}

// The fake finds the spec through FAKE_FC_SPEC too, and refuses to start
// without a usable one.
func TestSpecKnob(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(fakeBin, "--api-sock", filepath.Join(dir, "api.sock"), "--id", "x")
	cmd.Env = append(os.Environ(), fctest.EnvSpec+"="+filepath.Join(dir, "missing.yaml"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(stderr.String(), "missing.yaml") {
		t.Fatalf("with FAKE_FC_SPEC pointing nowhere: %v, %q", err, stderr.String())
	}
	p, err := apispec.SpecPath()
	if err != nil {
		t.Fatal(err)
	}
	f := start(t, fctest.EnvSpec+"="+p)
	f.must(http.StatusOK, "GET", "/version", "")
}

// The phase table covers every operation of the API description and agrees
// with what its summaries say.
func TestPhaseTableMatchesTheSpec(t *testing.T) {
	p, err := apispec.SpecPath()
	if err != nil {
		t.Fatal(err)
	}
	spec, err := apispec.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, op := range spec.Operations() {
		seen[op.ID] = true
		if op.ID == "createSyncAction" {
			continue
		}
		ph, ok := phases[op.ID]
		if !ok {
			t.Errorf("%s %s (%s) is not in the phase table", op.Method, op.Template, op.ID)
			continue
		}
		text := op.Summary + " " + op.Description
		if strings.Contains(text, "Pre-boot only") && ph != preBoot {
			t.Errorf("%s: the spec says pre-boot only", op.ID)
		}
		if strings.Contains(text, "Post-boot only") && ph != postBoot {
			t.Errorf("%s: the spec says post-boot only", op.ID)
		}
	}
	for id := range phases {
		if !seen[id] {
			t.Errorf("phase table names %s, which the spec lacks", id)
		}
	}
	for _, a := range []string{"InstanceStart", "SendCtrlAltDel", "FlushMetrics"} {
		if err := spec.Validate(context.Background(), "PUT", "/actions", []byte(fmt.Sprintf(`{"action_type":%q}`, a))); err != nil {
			t.Errorf("action %s: %v", a, err)
		}
		if _, ok := actionPhases[a]; !ok {
			t.Errorf("action %s is not classified", a)
		}
	}
}

// Snapshots as Firecracker takes them: only of a paused VM; loaded only
// into a fresh process, which then has the saved configuration.
func TestSnapshotCreateAndLoad(t *testing.T) {
	f := start(t)
	f.boot()
	state, mem := filepath.Join(f.dir, "vm.state"), filepath.Join(f.dir, "vm.mem")
	create := fmt.Sprintf(`{"snapshot_path":%q,"mem_file_path":%q}`, state, mem)
	if msg := f.fault("PUT", "/snapshot/create", create); !strings.Contains(msg, "not paused") {
		t.Errorf("a snapshot of a running vm: %q", msg)
	}
	f.must(http.StatusNoContent, "PATCH", "/vm", `{"state":"Paused"}`)
	f.must(http.StatusNoContent, "PUT", "/snapshot/create", create)
	if fi, err := os.Stat(mem); err != nil || fi.Size() == 0 {
		t.Fatalf("memory file: %v %v", fi, err)
	}
	load := fmt.Sprintf(`{"snapshot_path":%q,"mem_backend":{"backend_type":"File","backend_path":%q},"resume_vm":true}`, state, mem)
	if msg := f.fault("PUT", "/snapshot/load", load); msg != errPostBoot {
		t.Errorf("a load into a booted process: %q", msg)
	}

	g := start(t)
	g.configure()
	if msg := g.fault("PUT", "/snapshot/load", load); !strings.Contains(msg, "after configuring") {
		t.Errorf("a load after configuring the boot: %q", msg)
	}
	// The saved vsock socket is the first process's, still bound: as with
	// Firecracker, the load needs another.
	h := start(t)
	if msg := h.fault("PUT", "/snapshot/load", load); !strings.Contains(msg, "Address already in use") {
		t.Errorf("a load onto a socket in use: %q", msg)
	}
	h = start(t)
	h.must(http.StatusNoContent, "PUT", "/snapshot/load", strings.TrimSuffix(load, "}")+fmt.Sprintf(`,"vsock_override":{"uds_path":%q}}`, filepath.Join(h.dir, "v.sock")))
	if s := instanceState(t, h)["state"]; s != "Running" {
		t.Errorf("state after a load with resume_vm: %q", s)
	}
}
