// Package integration runs the built banger and bangerd binaries against a
// temporary state directory and socket, as a user would.
package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "banger-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Built once for the whole package, exactly as README's install does.
	build := exec.Command("go", "build", "-o", dir+"/", "../../cmd/banger", "../../cmd/bangerd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building binaries: %v\n%s", err, out)
		os.Exit(1)
	}
	_ = os.Chmod(dir, 0o755)
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one daemon's world: a socket and a state directory.
type env struct {
	t        *testing.T
	dir      string
	socket   string
	stateDir string
	// cred runs commands as another user when set.
	cred *syscall.Credential
}

func newEnv(t *testing.T) *env {
	t.Helper()
	// Short path: Unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "bgi")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, socket: filepath.Join(dir, "bangerd.sock"), stateDir: filepath.Join(dir, "state")}
	t.Cleanup(func() {
		e.stopDaemon()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(e.stateDir, "bangerd.log")); err == nil {
				t.Logf("bangerd.log:\n%s", b)
			}
		}
		os.RemoveAll(dir)
	})
	return e
}

type result struct {
	stdout, stderr string
	code           int
}

func (e *env) banger(args ...string) result {
	e.t.Helper()
	full := append([]string{"--socket", e.socket, "--state-dir", e.stateDir}, args...)
	cmd := exec.Command(filepath.Join(binDir, "banger"), full...)
	// No VMM on PATH: these tests cover the daemon without booting guests
	// (test/e2e boots them), including the "no VM driver" answer.
	cmd.Env = append(os.Environ(), "PATH="+binDir+":/usr/sbin:/sbin", "HOME="+e.dir)
	if e.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: e.cred}
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("running banger %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

func (e *env) ok(args ...string) string {
	e.t.Helper()
	r := e.banger(args...)
	if r.code != 0 {
		e.t.Fatalf("banger %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs a command that must exit with code and a "banger: " message
// containing want.
func (e *env) fails(code int, want string, args ...string) {
	e.t.Helper()
	r := e.banger(args...)
	if r.code != code {
		e.t.Fatalf("banger %v: exit %d, want %d\nstderr: %s", args, r.code, code, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "banger: ") || !strings.Contains(r.stderr, want) {
		e.t.Fatalf("banger %v: stderr %q does not start with \"banger: \" and contain %q", args, r.stderr, want)
	}
}

type status struct {
	Version       string  `json:"version"`
	PID           int     `json:"pid"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	Socket        string  `json:"socket"`
	StateDir      string  `json:"state_dir"`
	Driver        string  `json:"driver"`
}

func (e *env) status() status {
	e.t.Helper()
	var st status
	if err := json.Unmarshal([]byte(e.ok("daemon", "status", "--json")), &st); err != nil {
		e.t.Fatalf("daemon status --json: %v", err)
	}
	return st
}

type vmJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	State     string    `json:"state"`
	Image     string    `json:"image"`
	VCPUs     int       `json:"vcpus"`
	MemoryMiB int64     `json:"memory_mib"`
	IP        string    `json:"ip"`
	CreatedAt time.Time `json:"created_at"`
}

func (e *env) list() []vmJSON {
	e.t.Helper()
	var vms []vmJSON
	if err := json.Unmarshal([]byte(e.ok("vm", "list", "--json")), &vms); err != nil {
		e.t.Fatalf("vm list --json: %v", err)
	}
	return vms
}

func (e *env) stopDaemon() {
	r := e.banger("daemon", "stop")
	if r.code != 0 {
		e.t.Logf("daemon stop: %s", r.stderr)
	}
}

func TestLifecycleAndCrashSurvival(t *testing.T) {
	e := newEnv(t)

	// The first command starts the daemon and says so.
	r := e.banger("vm", "list")
	if r.code != 0 || !strings.Contains(r.stderr, "starting it") {
		t.Fatalf("first command: exit %d, stderr %q", r.code, r.stderr)
	}
	st := e.status()
	if st.PID <= 0 || st.Socket != e.socket || st.StateDir != e.stateDir || st.Version == "" {
		t.Fatalf("status: %+v", st)
	}
	if fi, err := os.Stat(e.socket); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}

	e.ok("vm", "create", "a", "--no-start", "--vcpus", "3", "--memory", "768M")
	e.ok("vm", "create", "b", "--no-start", "--disk", "2G")
	opID := strings.TrimSpace(e.ok("vm", "create", "c", "--no-start", "--detach"))
	if !strings.HasPrefix(opID, "op-") {
		t.Fatalf("--detach printed %q, want an operation id", opID)
	}
	var o struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for o.State != "succeeded" && time.Now().Before(deadline) {
		_ = json.Unmarshal([]byte(e.ok("op", "status", opID, "--json")), &o)
		time.Sleep(50 * time.Millisecond)
	}
	if o.ID != opID || o.State != "succeeded" {
		t.Fatalf("op status: %+v", o)
	}

	vms := e.list()
	if len(vms) != 3 {
		t.Fatalf("want 3 vms, got %+v", vms)
	}
	a := vms[0]
	if a.Name != "a" || a.State != "created" || a.VCPUs != 3 || a.MemoryMiB != 768 || a.Image != "debian-12" || a.IP == "" || a.ID == "" || a.CreatedAt.IsZero() {
		t.Fatalf("vm a: %+v", a)
	}
	var shown vmJSON
	if err := json.Unmarshal([]byte(e.ok("vm", "show", "a", "--json")), &shown); err != nil || shown != a {
		t.Fatalf("show a: %+v %v", shown, err)
	}
	if out := e.ok("vm", "show", "a"); !strings.Contains(out, a.ID) {
		t.Fatalf("vm show text lacks the id: %s", out)
	}
	e.ok("vm", "delete", "c")

	// The daemon dies hard; the next command starts a new one and every
	// record is still there.
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, st.PID)
	after := e.list()
	if len(after) != 2 || after[0] != a || after[1].Name != "b" {
		t.Fatalf("records after kill -9: %+v", after)
	}
	if st2 := e.status(); st2.PID == st.PID {
		t.Fatal("daemon pid unchanged after kill -9")
	}

	// Starting without a driver is a clear error and changes nothing.
	e.fails(1, "no VM driver available", "vm", "start", "a")
	if got := e.list(); got[0].State != "created" {
		t.Fatalf("failed start changed state: %+v", got[0])
	}

	e.ok("vm", "delete", "a", "b")
	if got := e.list(); len(got) != 0 {
		t.Fatalf("vms after delete: %+v", got)
	}
	entries, _ := os.ReadDir(filepath.Join(e.stateDir, "vms"))
	if len(entries) != 0 {
		t.Fatalf("vm directories left after delete: %v", entries)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.ok("vm", "create", "keep", "--no-start")
	before := e.list()
	cases := []struct {
		want string
		args []string
	}{
		{`name: "Bad_Name" contains 'B'`, []string{"vm", "create", "Bad_Name", "--no-start"}},
		{"starts or ends with '-'", []string{"vm", "create", "--no-start", "--", "-x"}},
		{"limit is 63", []string{"vm", "create", strings.Repeat("a", 64), "--no-start"}},
		{"vcpus: 0 is out of range", []string{"vm", "create", "x", "--vcpus", "0", "--no-start"}},
		{"vcpus: 33 is out of range", []string{"vm", "create", "x", "--vcpus", "33", "--no-start"}},
		{`memory: "12X" is not a size`, []string{"vm", "create", "x", "--memory", "12X", "--no-start"}},
		{"more than this host's", []string{"vm", "create", "x", "--memory", "64T", "--no-start"}},
		{"below the minimum of 1G", []string{"vm", "create", "x", "--disk", "100M", "--no-start"}},
		{"neither registered nor in the catalog", []string{"vm", "create", "x", "--image", "nope", "--no-start"}},
		{`"keep" is already in use`, []string{"vm", "create", "keep", "--no-start"}},
		{`vm "ghost" not found`, []string{"vm", "show", "ghost"}},
		{`vm "ghost" not found`, []string{"vm", "delete", "ghost"}},
		{`vm "ghost" not found`, []string{"vm", "stop", "ghost"}},
		{`operation "op-nope" not found`, []string{"op", "status", "op-nope"}},
	}
	for _, c := range cases {
		e.fails(1, c.want, c.args...)
	}
	usage := [][]string{
		{"vm", "create"},
		{"vm", "create", "a", "b"},
		{"vm", "create", "x", "--vcpus", "many"},
		{"vm", "frobnicate"},
		{"nonsense"},
		{"vm", "show"},
		{"vm", "delete"},
		{"completion", "tcsh"},
	}
	for _, args := range usage {
		r := e.banger(args...)
		if r.code != 2 || !strings.HasPrefix(r.stderr, "banger: ") {
			t.Fatalf("banger %v: exit %d stderr %q, want a usage error (exit 2)", args, r.code, r.stderr)
		}
	}
	if after := e.list(); len(after) != 1 || after[0] != before[0] {
		t.Fatalf("bad input changed the vms: %+v", after)
	}
	entries, _ := os.ReadDir(filepath.Join(e.stateDir, "vms"))
	if len(entries) != 1 {
		t.Fatalf("bad input left vm directories: %d", len(entries))
	}
}

func TestDaemonCommands(t *testing.T) {
	e := newEnv(t)
	e.fails(1, "bangerd is not running", "daemon", "status")
	if out := e.ok("daemon", "start"); !strings.Contains(out, "bangerd started") {
		t.Fatalf("daemon start: %q", out)
	}
	if out := e.ok("daemon", "start"); !strings.Contains(out, "already running") {
		t.Fatalf("second daemon start: %q", out)
	}
	pid := e.status().PID
	// SIGTERM stops it cleanly and removes the socket.
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	if _, err := os.Stat(e.socket); !os.IsNotExist(err) {
		t.Fatalf("socket left after SIGTERM: %v", err)
	}
	e.ok("daemon", "start")
	if out := e.ok("daemon", "stop"); !strings.Contains(out, "stopped") {
		t.Fatalf("daemon stop: %q", out)
	}
	if out := e.ok("daemon", "stop"); !strings.Contains(out, "not running") {
		t.Fatalf("second daemon stop: %q", out)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if out := e.ok("completion", shell); !strings.Contains(out, "banger") {
			t.Fatalf("completion %s printed no script", shell)
		}
	}
	if out := e.ok("version"); !strings.HasPrefix(out, "banger ") {
		t.Fatalf("version: %q", out)
	}
	// A bad config file stops the daemon from starting, and banger says why.
	cfg := filepath.Join(e.dir, "bad.toml")
	if err := os.WriteFile(cfg, []byte("subnet = \"not-a-subnet\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.fails(1, "subnet", "--config", cfg, "vm", "list")
}

// TestCallerOutsideGroupIsRefused runs the CLI as an unprivileged user
// against a root daemon: refused by socket permissions, and refused by the
// daemon's own credential check when the socket is opened up; allowed once
// that user's group is the socket group.
func TestCallerOutsideGroupIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI must run this test as root")
		}
		t.Skip("needs root to run commands as another user")
	}
	const nobody, nogroup = 65534, 65534
	e := newEnv(t)
	_ = os.Chmod(e.dir, 0o755)
	e.ok("daemon", "start") // as root, socket group "banger" (absent here, so root-only)
	e.ok("vm", "create", "mine", "--no-start")

	outsider := *e
	outsider.cred = &syscall.Credential{Uid: nobody, Gid: nogroup}
	outsider.fails(1, "permission denied", "vm", "list")

	// Open the socket to everyone: now the daemon's SO_PEERCRED check is
	// what refuses.
	if err := os.Chmod(e.socket, 0o666); err != nil {
		t.Fatal(err)
	}
	outsider.fails(1, "permission denied: uid 65534", "vm", "list")
	outsider.fails(1, "permission denied: uid 65534", "vm", "delete", "mine")
	if got := e.list(); len(got) != 1 {
		t.Fatalf("refused caller changed state: %+v", got)
	}
	e.stopDaemon()

	// With socket_group = nogroup, a member of that group may call.
	cfg := filepath.Join(e.dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("socket_group = \"nogroup\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("--config", cfg, "daemon", "start")
	fi, err := os.Stat(e.socket)
	if err != nil {
		t.Fatal(err)
	}
	if gid := fi.Sys().(*syscall.Stat_t).Gid; gid != nogroup || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket gid %d mode %v, want %d and 0660", gid, fi.Mode().Perm(), nogroup)
	}
	var vms []vmJSON
	if err := json.Unmarshal([]byte(outsider.ok("vm", "list", "--json")), &vms); err != nil || len(vms) != 1 {
		t.Fatalf("group member's list: %+v %v", vms, err)
	}
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d still alive", pid)
}
