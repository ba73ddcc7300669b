// Package e2e boots real guests with the built banger binaries: QEMU under
// TCG, the debian-12 image, banger's initramfs and agent, host networking.
// Every test makes its own network namespace and runs bangerd inside it,
// so every bridge, tap and address lives there and is gone afterwards.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/image"
	"github.com/banger-dev/banger/internal/testimage"
)

var (
	binDir     string
	imageCache string
	skipReason string
)

func TestMain(m *testing.M) {
	if reg := os.Getenv("BANGER_E2E_PUSH"); reg != "" {
		// Not a test run: pushImages re-ran this binary inside a namespace.
		os.Exit(pushMain(reg))
	}
	if spec := os.Getenv("BANGER_E2E_SLOWPROXY"); spec != "" {
		// Not a test run: a test serves this binary as a slow proxy.
		os.Exit(slowProxyMain(spec))
	}
	if spec := os.Getenv("BANGER_E2E_LOOKUP"); spec != "" {
		// Not a test run: lookupIn re-ran this binary inside a namespace.
		os.Exit(lookupMain(spec))
	}
	skipReason = prerequisites()
	if skipReason == "" {
		dir, err := os.MkdirTemp("", "banger-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		build := exec.Command("go", "build", "-o", dir+"/", "../../cmd/banger", "../../cmd/bangerd", "../../cmd/banger-agent")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building binaries: %v\n%s", err, out)
			os.Exit(1)
		}
		binDir = dir
		defer os.RemoveAll(dir)
		imageCache = testimage.Cache()
		// The daemons under test run in namespaces with no route out, so
		// the debian-12 image (which needs the mirror) is built here, in
		// the host's namespace, into the cache their config names.
		fmt.Fprintln(os.Stderr, "e2e: ensuring the debian-12 image in", imageCache)
		if _, err := image.CachedDebian(context.Background(), imageCache, image.DebianOptions{}, nil); err != nil {
			fmt.Fprintln(os.Stderr, "building the debian-12 image:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// prerequisites returns why real guests cannot boot here, or "".
func prerequisites() string {
	if os.Geteuid() != 0 {
		return "end-to-end tests need root (network namespaces, taps, nftables)"
	}
	for _, bin := range []string{"qemu-system-x86_64", "mmdebstrap", "mkfs.ext4", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			return bin + " is not installed (scripts/deps installs it)"
		}
	}
	return ""
}

func requireGuests(t *testing.T) {
	t.Helper()
	if skipReason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI must boot real guests, but: %s", skipReason)
	}
	t.Skip(skipReason)
}

// world is one test's namespace, state dir and daemon.
type world struct {
	t        *testing.T
	ns       string
	dir      string
	socket   string
	stateDir string
	config   string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	requireGuests(t)
	dir, err := os.MkdirTemp("", "bge2e")
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, ns: "bge2e-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano()%100000, 10),
		dir: dir, socket: filepath.Join(dir, "bangerd.sock"), stateDir: filepath.Join(dir, "state"), config: filepath.Join(dir, "config.toml")}
	if out, err := exec.Command("ip", "netns", "add", w.ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "-n", w.ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	cfg := fmt.Sprintf("image_cache_dir = %q\nboot_timeout = \"300s\"\nstop_timeout = \"20s\"\ndefault_memory = \"512M\"\ndefault_disk = \"2G\"\noverlay_size = \"2G\"\n", imageCache)
	if err := os.WriteFile(w.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.cleanup)
	return w
}

// cleanup deletes every VM, stops the daemon, kills any VMM left by PID,
// keeps console logs of failed tests, and removes the namespace.
func (w *world) cleanup() {
	t := w.t
	if t.Failed() {
		w.keepArtifacts()
	}
	for _, v := range w.listQuiet() {
		w.banger("vm", "delete", "--force", v.Name)
	}
	w.banger("daemon", "stop")
	for _, pid := range w.vmmPIDs() {
		t.Logf("killing leftover VMM %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if out, err := exec.Command("ip", "netns", "del", w.ns).CombinedOutput(); err != nil {
		t.Logf("ip netns del: %v: %s", err, out)
	}
	os.RemoveAll(w.dir)
}

func (w *world) keepArtifacts() {
	dst := filepath.Join(os.TempDir(), "banger-e2e-artifacts", w.t.Name())
	_ = os.MkdirAll(dst, 0o755)
	logs, _ := filepath.Glob(filepath.Join(w.stateDir, "vms", "*", "*.log"))
	logs = append(logs, filepath.Join(w.stateDir, "bangerd.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		name := strings.ReplaceAll(strings.TrimPrefix(l, w.stateDir+"/"), "/", "_")
		_ = os.WriteFile(filepath.Join(dst, name), b, 0o644)
		tail := b
		if len(tail) > 3000 {
			tail = tail[len(tail)-3000:]
		}
		w.t.Logf("---- %s (tail) ----\n%s", l, tail)
	}
	w.t.Logf("serial and daemon logs kept in %s", dst)
}

type result struct {
	stdout, stderr string
	code           int
}

// banger runs the CLI inside the namespace.
func (w *world) banger(args ...string) result {
	r, err := w.run(args...)
	if err != nil {
		w.t.Fatalf("running banger %v: %v", args, err)
	}
	return r
}

// run is banger without the test's failure, for use in other goroutines.
func (w *world) run(args ...string) (result, error) {
	full := append([]string{"netns", "exec", w.ns, filepath.Join(binDir, "banger"),
		"--socket", w.socket, "--state-dir", w.stateDir, "--config", w.config}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", full...)
	cmd.Env = append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH"), "XDG_CACHE_HOME="+filepath.Join(w.dir, "cache"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		return result{}, err
	}
	return result{out.String(), errb.String(), code}, nil
}

func (w *world) ok(args ...string) string {
	w.t.Helper()
	r := w.banger(args...)
	if r.code != 0 {
		w.t.Fatalf("banger %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

type vmJSON struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
	IP    string `json:"ip"`
	Dir   string `json:"dir"`
	Error string `json:"last_error"`
	// Paused says why a running VM's VMM holds it paused ("" if not).
	Paused string `json:"paused"`
}

func (w *world) listQuiet() []vmJSON {
	r := w.banger("vm", "list", "--json")
	var vms []vmJSON
	_ = json.Unmarshal([]byte(r.stdout), &vms)
	return vms
}

func (w *world) show(name string) vmJSON {
	w.t.Helper()
	var v vmJSON
	if err := json.Unmarshal([]byte(w.ok("vm", "show", name, "--json")), &v); err != nil {
		w.t.Fatal(err)
	}
	return v
}

type handles struct {
	PID int    `json:"pid"`
	Tap string `json:"tap"`
}

func (w *world) handles(v vmJSON) handles {
	w.t.Helper()
	var h handles
	b, err := os.ReadFile(filepath.Join(v.Dir, "handles.json"))
	if err != nil {
		w.t.Fatalf("reading handles of %s: %v", v.Name, err)
	}
	if err := json.Unmarshal(b, &h); err != nil {
		w.t.Fatal(err)
	}
	return h
}

// vmmPIDs finds QEMU processes whose command line points into this
// world's state dir.
func (w *world) vmmPIDs() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), w.stateDir) && strings.Contains(string(b), "qemu") {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (w *world) links() string {
	out, _ := exec.Command("ip", "-n", w.ns, "-o", "link").CombinedOutput()
	return string(out)
}

// pins lists the permanent ARP entries on banger's bridge, one per line.
func (w *world) pins() string {
	out, _ := exec.Command("ip", "-n", w.ns, "neigh", "show", "dev", "banger0", "nud", "permanent").CombinedOutput()
	return strings.TrimSpace(string(out))
}

func (w *world) daemonPID() int {
	w.t.Helper()
	var st struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(w.ok("daemon", "status", "--json")), &st); err != nil {
		w.t.Fatal(err)
	}
	return st.PID
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 400; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("process %d still alive", pid)
}

// 1. vm run prints the guest's answer, passes exit codes, and --rm leaves
// nothing behind.
func TestRunRemovesEverything(t *testing.T) {
	w := newWorld(t)
	r := w.banger("vm", "run", "--rm", "--name", "once", "--", "cat", "/etc/os-release")
	if r.code != 0 || !strings.Contains(r.stdout, `VERSION_ID="12"`) || !strings.Contains(r.stdout, "bookworm") {
		t.Fatalf("vm run: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if vms := w.listQuiet(); len(vms) != 0 {
		t.Fatalf("vms left after --rm: %+v", vms)
	}
	if pids := w.vmmPIDs(); len(pids) != 0 {
		t.Fatalf("VMM processes left after --rm: %v", pids)
	}
	if entries, _ := os.ReadDir(filepath.Join(w.stateDir, "vms")); len(entries) != 0 {
		t.Fatalf("vm files left after --rm: %v", entries)
	}
	taps := strings.Count(w.links(), "bgtap")
	r = w.banger("vm", "run", "--rm", "--", "sh", "-c", "exit 7")
	if r.code != 7 {
		t.Fatalf("vm run exit 7: got %d\nstderr: %s", r.code, r.stderr)
	}
	if got := strings.Count(w.links(), "bgtap"); got > taps {
		t.Fatalf("taps grew from %d to %d across vm run --rm:\n%s", taps, got, w.links())
	}

	// Everything banger added to the host can be removed: refused while a
	// VM runs, then bridge, taps and the nftables table are gone.
	if pins := w.pins(); pins != "" {
		t.Fatalf("pinned guest addresses left after vm run --rm:\n%s", pins)
	}
	w.ok("vm", "create", "keep")
	if keep := w.show("keep"); !strings.HasPrefix(w.pins(), keep.IP+" ") {
		t.Fatalf("running vm at %s, pinned guest addresses:\n%s", keep.IP, w.pins())
	}
	if r := w.banger("daemon", "stop", "--teardown"); r.code != 1 || !strings.Contains(r.stderr, "keep") {
		t.Fatalf("teardown with a running vm: exit %d, %q", r.code, r.stderr)
	}
	w.ok("vm", "delete", "--force", "keep")
	w.ok("daemon", "stop", "--teardown")
	if links := w.links(); strings.Contains(links, "banger0") || strings.Contains(links, "bgtap") {
		t.Fatalf("links left after teardown:\n%s", links)
	}
	if out, _ := exec.Command("ip", "netns", "exec", w.ns, "nft", "list", "tables").CombinedOutput(); strings.Contains(string(out), "banger") {
		t.Fatalf("nftables table left after teardown: %s", out)
	}
}

// 2. Identity, and /work and the root overlay persist across stop/start.
func TestPersistenceAcrossRestart(t *testing.T) {
	w := newWorld(t)
	w.ok("vm", "create", "a")
	if out := w.ok("vm", "ssh", "a", "--", "hostname"); strings.TrimSpace(out) != "a" {
		t.Fatalf("hostname: %q", out)
	}
	if r := w.banger("image", "delete", "debian-12"); r.code != 1 || !strings.Contains(r.stderr, "used by a vm") {
		t.Fatalf("deleting an image in use: exit %d, %q", r.code, r.stderr)
	}
	w.ok("vm", "ssh", "a", "--", "sh", "-c", "echo kept > /work/w.txt && echo kept > /root/r.txt && sync")
	var st struct {
		CPUSeconds     float64 `json:"cpu_seconds"`
		MemoryRSSBytes int64   `json:"memory_rss_bytes"`
		DiskWriteBytes int64   `json:"disk_write_bytes"`
		NetRxBytes     int64   `json:"net_rx_bytes"`
		NetTxBytes     int64   `json:"net_tx_bytes"`
	}
	if err := json.Unmarshal([]byte(w.ok("vm", "stats", "a", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.CPUSeconds <= 0 || st.MemoryRSSBytes <= 0 || st.DiskWriteBytes <= 0 || st.NetRxBytes <= 0 || st.NetTxBytes <= 0 {
		t.Fatalf("vm stats of a running, ssh'd-into vm has a zero counter: %+v", st)
	}
	if logs := w.ok("vm", "logs", "a"); !strings.Contains(logs, "banger-agent") || !strings.Contains(logs, "login:") {
		t.Fatalf("vm logs lacks the agent's and getty's lines:\n%s", logs)
	}
	w.ok("vm", "stop", "a")
	if v := w.show("a"); v.State != "stopped" {
		t.Fatalf("after stop: %s", v.State)
	}
	if pids := w.vmmPIDs(); len(pids) != 0 {
		t.Fatalf("VMM still running after stop: %v", pids)
	}
	if r := w.banger("vm", "set", "a", "--disk", "1G"); r.code != 1 || !strings.Contains(r.stderr, "only grows") {
		t.Fatalf("shrinking the work disk: exit %d, %q", r.code, r.stderr)
	}
	w.ok("vm", "set", "a", "--vcpus", "1", "--memory", "768M", "--disk", "3G")
	w.ok("vm", "start", "a")
	if out := w.ok("vm", "ssh", "a", "--", "cat", "/work/w.txt", "/root/r.txt"); out != "kept\nkept\n" {
		t.Fatalf("files after restart: %q", out)
	}
	// The new resources are what the guest sees: one vCPU, about 768 MiB,
	// and /work grown to about 3 GiB with its files kept.
	out := w.ok("vm", "ssh", "a", "--", "sh", "-c", "nproc; free -m | awk '/^Mem:/ {print $2}'; df -m /work | awk 'NR==2 {print $2}'")
	var cpus, memMiB, workMiB int
	if _, err := fmt.Sscan(out, &cpus, &memMiB, &workMiB); err != nil || cpus != 1 || memMiB < 600 || memMiB > 768 || workMiB < 2800 {
		t.Fatalf("after vm set: nproc, MemTotal MiB, /work MiB = %q", out)
	}
	if r := w.banger("vm", "set", "a", "--vcpus", "2"); r.code != 1 || !strings.Contains(r.stderr, "stopped") {
		t.Fatalf("vm set on a running vm: exit %d, %q", r.code, r.stderr)
	}
	a := w.show("a")
	tap := w.handles(a).Tap
	w.ok("vm", "delete", "--force", "a")
	if _, err := os.Stat(a.Dir); !os.IsNotExist(err) {
		t.Fatalf("vm dir left after delete: %v", err)
	}
	if tap == "" || strings.Contains(w.links(), tap+":") {
		t.Fatalf("tap %q left after delete:\n%s", tap, w.links())
	}
	w.ok("vm", "create", "b", "--no-start")
	if b := w.show("b"); b.IP != a.IP {
		t.Fatalf("ip %s not freed: new vm got %s", a.IP, b.IP)
	}
}

// 3. Names resolve between guests and from the host side of the namespace.
func TestDNSBetweenGuests(t *testing.T) {
	w := newWorld(t)
	w.ok("vm", "create", "a")
	w.ok("vm", "create", "b")
	a, b := w.show("a"), w.show("b")
	out := w.ok("vm", "ssh", "a", "--", "getent", "hosts", "b.vm")
	if !strings.HasPrefix(out, b.IP+" ") {
		t.Fatalf("b.vm from a: %q, want %s", out, b.IP)
	}
	w.ok("vm", "ssh", "a", "--", "ping", "-c", "1", "-W", "5", "b.vm")
	// From the host side: ask banger's DNS server (on the bridge address)
	// from inside the namespace.
	got := lookupIn(t, w.ns, gatewayOf(a.IP)+":53", "a.vm")
	if got != a.IP {
		t.Fatalf("dns a.vm = %q, want %s", got, a.IP)
	}

	// A guest that powers itself off is noticed by the running daemon:
	// stopped, its VMM gone and its tap released; a keeps running.
	tap := w.handles(b).Tap
	w.ok("vm", "ssh", "b", "--", "sh", "-c", "nohup sh -c 'sleep 1; poweroff' >/dev/null 2>&1 &")
	deadline := time.Now().Add(90 * time.Second)
	for w.show("b").State != "stopped" {
		if time.Now().After(deadline) {
			t.Fatalf("b powered itself off but is still %s", w.show("b").State)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if strings.Contains(w.links(), tap+":") {
		t.Fatalf("b's tap %s left after it powered off", tap)
	}
	if got := w.show("a").State; got != "running" {
		t.Fatalf("a is %s", got)
	}
}

// gatewayOf is the .1 of a /24 guest address.
func gatewayOf(ip string) string {
	i := strings.LastIndex(ip, ".")
	return ip[:i] + ".1"
}

// lookupIn resolves name with the DNS server at server, from inside ns
// (the test binary itself runs the query under `ip netns exec`).
func lookupIn(t *testing.T, ns, server, name string) string {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command("ip", "netns", "exec", ns, self)
	cmd.Env = append(os.Environ(), "BANGER_E2E_LOOKUP="+server+","+name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("lookup helper: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "ANSWER "); ok {
			return strings.TrimSpace(rest)
		}
	}
	t.Fatalf("lookup helper printed no answer: %s", out)
	return ""
}

// lookupMain resolves "server,name" and prints the first answer.
func lookupMain(spec string) int {
	server, name, _ := strings.Cut(spec, ",")
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", server)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, name)
	if err != nil || len(addrs) == 0 {
		fmt.Fprintf(os.Stderr, "lookup %s at %s: %v\n", name, server, err)
		return 1
	}
	fmt.Println("ANSWER " + addrs[0])
	return 0
}

// 4. The daemon's crash leaves VMs running; a VM that dies meanwhile is
// found dead and cleaned up.
func TestDaemonCrashAndReconcile(t *testing.T) {
	w := newWorld(t)
	w.ok("vm", "create", "a")
	a := w.show("a")
	h := w.handles(a)
	pid := w.daemonPID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	if syscall.Kill(h.PID, 0) != nil {
		t.Fatal("VMM died with the daemon")
	}
	// The next command starts a new daemon, which finds a running.
	if v := w.show("a"); v.State != "running" {
		t.Fatalf("after daemon restart: %s", v.State)
	}
	if out := w.ok("vm", "ssh", "a", "--", "hostname"); strings.TrimSpace(out) != "a" {
		t.Fatalf("ssh after daemon restart: %q", out)
	}
	// Now kill the daemon, then the VM behind its back.
	pid = w.daemonPID()
	_ = syscall.Kill(pid, syscall.SIGKILL)
	waitGone(t, pid)
	_ = syscall.Kill(h.PID, syscall.SIGKILL)
	waitGone(t, h.PID)
	v := w.show("a")
	if v.State != "stopped" {
		t.Fatalf("dead vm after reconcile: %s", v.State)
	}
	if h.Tap != "" && strings.Contains(w.links(), h.Tap+":") {
		t.Fatalf("tap %s left after reconcile:\n%s", h.Tap, w.links())
	}
}

// The daemon says which driver it picked and why, and doctor agrees; on
// this kind of host (no Firecracker) that is QEMU, and doctor has no FAIL.
func TestDriverChoiceAndDoctor(t *testing.T) {
	w := newWorld(t)
	var st struct {
		Driver       string `json:"driver"`
		DriverReason string `json:"driver_reason"`
	}
	w.ok("daemon", "start")
	if err := json.Unmarshal([]byte(w.ok("daemon", "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Driver == "" || st.Driver == "none" || st.DriverReason == "" {
		t.Fatalf("daemon status: driver %q, reason %q", st.Driver, st.DriverReason)
	}
	var checks []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		Fix    string `json:"fix"`
	}
	r := w.banger("doctor", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &checks); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, r.stdout)
	}
	failed := false
	for _, c := range checks {
		if c.Status != "OK" && c.Fix == "" {
			t.Errorf("doctor check %q is %s without a fix", c.Name, c.Status)
		}
		failed = failed || c.Status == "FAIL"
	}
	if failed != (r.code == 1) {
		t.Fatalf("doctor exit %d does not match its checks: %+v", r.code, checks)
	}
	if failed {
		t.Fatalf("doctor fails on a host that boots guests: %+v", checks)
	}
}

// 5. Bad input: exit 1, a clear message, nothing created.
func TestBadInputCreatesNothing(t *testing.T) {
	w := newWorld(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"vm", "create", "Bad_Name"}, "name"},
		{[]string{"vm", "create", "x", "--image", "no-such-image"}, "neither registered nor in the catalog"},
		{[]string{"vm", "create", "x", "--vcpus", "0"}, "vcpus: 0 is out of range"},
		{[]string{"vm", "create", "x", "--memory", "64T"}, "more than this host's"},
		{[]string{"vm", "run", "--vcpus", "0", "--", "true"}, "vcpus"},
	}
	for _, c := range cases {
		r := w.banger(c.args...)
		if r.code != 1 || !strings.HasPrefix(r.stderr, "banger: ") || !strings.Contains(r.stderr, c.want) {
			t.Fatalf("banger %v: exit %d stderr %q; want exit 1 with %q", c.args, r.code, r.stderr, c.want)
		}
	}
	if vms := w.listQuiet(); len(vms) != 0 {
		t.Fatalf("bad input created %+v", vms)
	}
	if entries, _ := os.ReadDir(filepath.Join(w.stateDir, "vms")); len(entries) != 0 {
		t.Fatalf("bad input left files: %v", entries)
	}
	if pids := w.vmmPIDs(); len(pids) != 0 {
		t.Fatalf("bad input started VMMs: %v", pids)
	}
}
