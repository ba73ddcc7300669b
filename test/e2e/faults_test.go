package e2e

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// killDaemon SIGKILLs the daemon, and with children also every process of
// its group (as a cgroup or process-group kill does: a mkfs it runs dies
// with it; VMMs run in their own sessions and survive).
func (w *world) killDaemon(children bool) {
	w.t.Helper()
	pid := w.daemonPID()
	if children {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	waitGone(w.t, pid)
}

// invariants checks that the records are truthful and nothing is left
// that no record owns: every VM dir has a record, every VMM belongs to a
// VM recorded running, every tap to such a VM or to the pool, and a VM
// can be created, booted and deleted again.
func (w *world) invariants(what string) {
	t := w.t
	t.Helper()
	vms := w.listQuiet()
	byID := map[string]vmJSON{}
	for _, v := range vms {
		byID[v.ID] = v
		if v.State == "starting" || v.State == "stopping" {
			t.Fatalf("%s: vm %s left in transitional state %s", what, v.Name, v.State)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(w.stateDir, "vms"))
	for _, e := range entries {
		if _, ok := byID[e.Name()]; !ok {
			t.Fatalf("%s: vm directory %s has no record", what, e.Name())
		}
		for _, f := range listDir(filepath.Join(w.stateDir, "vms", e.Name())) {
			if strings.Contains(f, ".tmp-") {
				t.Fatalf("%s: half-written file %s left", what, f)
			}
		}
	}
	running := map[int]bool{}
	held := map[string]bool{}
	for _, v := range vms {
		if v.State == "running" {
			h := w.handles(v)
			running[h.PID] = true
			held[h.Tap] = true
		}
	}
	for _, pid := range w.vmmPIDs() {
		if !running[pid] {
			t.Fatalf("%s: VMM %d belongs to no running vm (vms %+v)", what, pid, vms)
		}
	}
	pooled := 0
	for _, line := range strings.Split(w.links(), "\n") {
		if i := strings.Index(line, "bgtap"); i >= 0 {
			name := strings.TrimRight(strings.Fields(line[i:])[0], ":@")
			if !held[name] {
				pooled++
			}
		}
	}
	if pooled > 2 {
		t.Fatalf("%s: %d taps held by no vm (the pool keeps 2):\n%s", what, pooled, w.links())
	}
}

func listDir(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// The daemon is killed with SIGKILL at named points of create, start and
// delete, with and without its children; every time, the restarted daemon
// leaves the records truthful and nothing unowned, and work goes on.
func TestFaultSweep(t *testing.T) {
	w := newWorld(t)
	w.ok("daemon", "start")

	// create: right after --detach returns (the disks are being made).
	for _, children := range []bool{false, true} {
		w.ok("vm", "create", "k1", "--detach")
		w.killDaemon(children)
		w.invariants("kill after create --detach")
		if vms := w.listQuiet(); len(vms) != 0 {
			t.Fatalf("an interrupted create left %+v", vms)
		}
	}

	// create: just after the VMM was spawned (its handles not yet written).
	w.ok("vm", "create", "k2", "--detach")
	waitFor(t, "a VMM for k2", func() bool { return len(w.vmmPIDs()) > 0 })
	w.killDaemon(false)
	w.invariants("kill just after the VMM spawned")

	// start: the same, on an existing stopped VM.
	w.ok("vm", "create", "k3", "--no-start")
	go func() { _, _ = w.run("vm", "start", "k3") }()
	waitFor(t, "a VMM for k3", func() bool { return len(w.vmmPIDs()) > 0 })
	w.killDaemon(true)
	w.invariants("kill during start")
	if v := w.show("k3"); v.State != "stopped" && v.State != "running" {
		t.Fatalf("k3 after a kill during start: %s", v.State)
	}

	// delete: a few milliseconds in.
	w.ok("vm", "create", "k4")
	go func() { _, _ = w.run("vm", "delete", "--force", "k4") }()
	time.Sleep(300 * time.Millisecond)
	w.killDaemon(false)
	w.invariants("kill during delete")

	// A second daemon on the same socket with another state dir touches
	// nothing: k4 (if it survived) or a fresh VM keeps its tap.
	w.ok("vm", "create", "live")
	live := w.show("live")
	tap := w.handles(live).Tap
	second := exec.Command("ip", "netns", "exec", w.ns, filepath.Join(binDir, "bangerd"),
		"--socket", w.socket, "--state-dir", filepath.Join(w.dir, "other"), "--config", w.config)
	if out, err := second.CombinedOutput(); err == nil || !strings.Contains(string(out), "another bangerd") {
		t.Fatalf("a second daemon on the socket: %v\n%s", err, out)
	}
	if !strings.Contains(w.links(), tap+":") && !strings.Contains(w.links(), tap+"@") {
		t.Fatalf("a second daemon removed running vm's tap %s:\n%s", tap, w.links())
	}
	if out := w.ok("vm", "ssh", "live", "--", "echo", "ok"); out != "ok\n" {
		t.Fatalf("live vm after the second daemon: %q", out)
	}

	// Socket abuse, bounded: {} and null are answered, a half line times
	// out without blocking others, and the daemon keeps serving.
	for _, msg := range []string{`{}`, `null`} {
		if resp := rawCall(t, w.socket, msg); !strings.Contains(resp, `"code":-32600`) {
			t.Fatalf("%s answered %q", msg, resp)
		}
	}
	var conns []net.Conn
	for i := 0; i < 300; i++ {
		c, err := net.Dial("unix", w.socket)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
	w.ok("vm", "list")

	// And the system still works end to end.
	w.ok("vm", "create", "after")
	w.ok("vm", "delete", "--force", "after")
	w.invariants("after the sweep")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 3 minutes", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawCall sends one raw line on the socket and returns the answer line.
func rawCall(t *testing.T, socket, line string) string {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer to %s: %v", line, err)
	}
	var v map[string]any
	if json.Unmarshal([]byte(resp), &v) != nil {
		t.Fatalf("answer to %s is not JSON: %q", line, resp)
	}
	return resp
}

// The daemon is killed with SIGKILL in the middle of a snapshot, a fork
// and a restore: the restarted one resumes a VM the save left paused,
// keeps a snapshot only when it was complete, removes every copy of an
// unfinished fork, and leaves a restored VM running or stopped, never
// half there.
func TestSaveFaults(t *testing.T) {
	w := newWorld(t)
	w.ok("vm", "create", "s")
	id := w.show("s").ID
	snapshots := filepath.Join(w.stateDir, "vms", id, "snapshots")
	saving := func() bool {
		for _, n := range listDir(snapshots) {
			if strings.HasPrefix(n, ".tmp-") {
				return true
			}
		}
		return false
	}
	settled := func(what string) {
		t.Helper()
		w.invariants(what)
		if saving() {
			t.Fatalf("%s: the interrupted save's directory is left: %v", what, listDir(snapshots))
		}
		if v := w.show("s"); v.State != "running" || v.Paused != "" {
			t.Fatalf("%s: the source is %s (paused: %q)", what, v.State, v.Paused)
		}
		if out := w.ok("vm", "ssh", "s", "--", "echo", "ok"); out != "ok\n" {
			t.Fatalf("%s: the source answers %q", what, out)
		}
	}

	go func() { _, _ = w.run("vm", "snapshot", "s", "--name", "cut") }()
	waitFor(t, "a snapshot being saved", saving)
	w.killDaemon(false)
	settled("kill during a snapshot")
	if out := w.ok("vm", "snapshot", "list", "s"); strings.Contains(out, "cut") {
		// Only a complete one is listed: it must restore.
		w.ok("vm", "restore", "s", "cut")
	}

	go func() { _, _ = w.run("vm", "fork", "s", "f", "--count", "2") }()
	waitFor(t, "a fork's copy running", func() bool { return len(w.vmmPIDs()) >= 2 })
	w.killDaemon(false)
	settled("kill during a fork")
	for _, n := range []string{"f-1", "f-2"} {
		if r := w.banger("vm", "show", n); r.code == 0 {
			t.Errorf("an interrupted fork left vm %s", n)
		}
	}

	w.ok("vm", "snapshot", "s", "--name", "back")
	go func() { _, _ = w.run("vm", "restore", "s", "back") }()
	time.Sleep(700 * time.Millisecond)
	w.killDaemon(false)
	w.invariants("kill during a restore")
	if v := w.show("s"); v.State != "running" {
		if v.State != "stopped" {
			t.Fatalf("after a kill during a restore the vm is %s", v.State)
		}
		w.ok("vm", "restore", "s", "back")
	}
	if out := w.ok("vm", "ssh", "s", "--", "echo", "ok"); out != "ok\n" {
		t.Fatalf("after a kill during a restore the vm answers %q", out)
	}
}

// A disk that fills up while a running VM is saved (a snapshot, a fork):
// the save fails with an error, the VM runs on, and nothing half-written
// is registered or left behind. The full disk is a small tmpfs over the
// VM's snapshots directory, mounted in the daemon's mount namespace.
func TestSaveDiskFull(t *testing.T) {
	w := newWorld(t)
	w.ok("vm", "create", "full")
	snapshots := filepath.Join(w.stateDir, "vms", w.show("full").ID, "snapshots")
	if err := os.MkdirAll(snapshots, 0o700); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(w.daemonPID())
	inDaemon := func(argv ...string) {
		t.Helper()
		// --root: setns into a mount namespace resets the root to the
		// namespace's own, which is not the daemon's under a chroot (as
		// CI's fresh root is); take the daemon's root again.
		if out, err := exec.Command("nsenter", append([]string{"--target", pid, "--mount", "--root", "--"}, argv...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v in the daemon's mount namespace: %v\n%s", argv, err, out)
		}
	}
	inDaemon("mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "banger-e2e-full", snapshots)
	mounted := true
	defer func() {
		if mounted {
			inDaemon("umount", snapshots)
		}
	}()
	seen := "/proc/" + pid + "/root" + snapshots // the tmpfs, as the daemon sees it
	left := func(what string) {
		t.Helper()
		if names := listDir(seen); len(names) != 0 {
			t.Errorf("%s left %v on the full disk", what, names)
		}
		if v := w.show("full"); v.State != "running" || v.Paused != "" {
			t.Fatalf("after %s the vm is %s (paused: %q)", what, v.State, v.Paused)
		}
		if out := w.ok("vm", "ssh", "full", "--", "echo", "ok"); out != "ok\n" {
			t.Fatalf("after %s the vm answers %q", what, out)
		}
	}

	r := w.banger("vm", "snapshot", "full", "--name", "big")
	if r.code == 0 || !strings.Contains(r.stderr, "saving vm full") || !strings.Contains(r.stderr, "free some space there") {
		t.Fatalf("a snapshot onto a full disk: exit %d, stderr %q", r.code, r.stderr)
	}
	t.Logf("snapshot onto a full disk: %s", strings.TrimSpace(r.stderr))
	left("a failed snapshot")
	if out := w.ok("vm", "snapshot", "list", "full"); strings.Contains(out, "big") {
		t.Errorf("a failed snapshot is listed:\n%s", out)
	}

	r = w.banger("vm", "fork", "full", "g", "--count", "2")
	if r.code == 0 {
		t.Fatalf("a fork through a full disk succeeded:\n%s", r.stdout)
	}
	left("a failed fork")
	for _, n := range []string{"g-1", "g-2"} {
		if r := w.banger("vm", "show", n); r.code == 0 {
			t.Errorf("a failed fork left vm %s", n)
		}
	}
	w.invariants("after saves onto a full disk")

	inDaemon("umount", snapshots)
	mounted = false
	w.ok("vm", "snapshot", "full", "--name", "after")
	if out := w.ok("vm", "snapshot", "list", "full"); !strings.Contains(out, "after") {
		t.Errorf("the snapshot after the disk was freed is not listed:\n%s", out)
	}
}
