package firecracker

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/vmm/firecracker/apispec"
	"github.com/banger-dev/banger/internal/vmm/firecracker/fctest"
)

var (
	fakeOnce   sync.Once
	fakePath   string
	fakeRemove func()
	fakeErr    error
)

// TestMain removes the fake's build directory, which would otherwise stay
// in the temp dir (17 MB) after every run.
func TestMain(m *testing.M) {
	code := m.Run()
	if fakeRemove != nil {
		fakeRemove()
	}
	os.Exit(code)
}

// fake builds the fake firecracker once per test binary, on first use so
// tests that need no fake pay nothing.
func fake(t *testing.T) string {
	t.Helper()
	fakeOnce.Do(func() {
		fakePath, fakeRemove, fakeErr = fctest.BuildTemp(context.Background())
	})
	if fakeErr != nil {
		t.Fatal(fakeErr)
	}
	return fakePath
}

// testSpec is a VM's spec with real files behind every path (Firecracker
// refuses paths that do not exist), in a short directory (socket paths).
func testSpec(t *testing.T) vmm.Spec {
	t.Helper()
	dir, err := os.MkdirTemp("", "fcvm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// With banger's modes: the initramfs 0640, the VM's own disks 0600.
	touch := func(name, content string) string {
		mode := os.FileMode(0o600)
		switch name {
		case "vmlinux", "rootfs.ext4":
			mode = 0o644
		case "initrd.cpio":
			mode = 0o640
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return vmm.Spec{
		VM:      model.VM{ID: "0123456789abcdef", Name: "a", VCPUs: 2, MemoryMiB: 512},
		Dir:     dir,
		Kernel:  touch("vmlinux", "\x7fELF fake kernel"),
		Initrd:  touch("initrd.cpio", "070701"),
		Cmdline: "console=ttyS0 panic=-1",
		Disks: []vmm.Disk{
			{Path: touch("rootfs.ext4", "base"), ReadOnly: true},
			{Path: touch("upper.ext4", "upper")},
			{Path: touch("work.ext4", "work")},
			{Path: touch("config.img", "config"), ReadOnly: true},
		},
		Tap: "bgtap0", MAC: "02:fc:ac:10:00:02",
		ConsoleLog:    filepath.Join(dir, "console.log"),
		ControlSocket: filepath.Join(dir, "agent.sock"),
	}
}

// recordedSpec is testSpec with the fake's requests recorded in its
// directory (the file's path is returned).
func recordedSpec(t *testing.T) (vmm.Spec, string) {
	t.Helper()
	spec := testSpec(t)
	record := filepath.Join(spec.Dir, "record.jsonl")
	t.Setenv(fctest.EnvRecord, record)
	return spec, record
}

func loadSpec(t *testing.T) *apispec.Spec {
	t.Helper()
	p, err := apispec.SpecPath()
	if err != nil {
		t.Fatal(err)
	}
	s, err := apispec.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Every request the driver can send, in both its plain and jailed forms
// and with and without optional parts, must be valid under Firecracker's
// OpenAPI file and use only fields it declares.
func TestEveryRequestIsValidUnderTheOpenAPIFile(t *testing.T) {
	s := loadSpec(t)
	full := testSpec(t)
	minimal := full
	minimal.Initrd, minimal.Tap, minimal.ControlSocket, minimal.Disks = "", "", "", full.Disks[:1]
	big := full
	big.VM.VCPUs, big.VM.MemoryMiB = 32, 65536
	jailed := full
	jailed.Dir, jailed.Kernel, jailed.Initrd, jailed.ControlSocket = "/", "/vmlinux", "/initrd", "/agent.sock"
	for name, spec := range map[string]vmm.Spec{"full": full, "minimal": minimal, "largest": big, "jailed": jailed} {
		reqs := Requests(spec, spec.Kernel)
		if reqs[len(reqs)-1].Path != "/actions" {
			t.Fatalf("%s: InstanceStart must come last", name)
		}
		for _, r := range reqs {
			body, err := json.Marshal(r.Body)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Validate(context.Background(), r.Method, r.Path, body); err != nil {
				t.Errorf("%s: %s %s %s: %v", name, r.Method, r.Path, body, err)
			}
			if extra, err := s.UndeclaredFields(r.Method, r.Path, body); err != nil || len(extra) > 0 {
				t.Errorf("%s: %s %s sends undeclared fields %v (%v)", name, r.Method, r.Path, extra, err)
			}
		}
	}
	// Snapshots: save, resume, and a load with and without a tap and a
	// vsock socket to put in place of the saved ones.
	snaps := append(SaveRequests("/snap/state"), ResumeRequest())
	for _, spec := range []vmm.Spec{full, minimal} {
		snaps = append(snaps, LoadRequests(spec, "/snap/state")...)
	}
	for _, r := range snaps {
		body, err := json.Marshal(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(context.Background(), r.Method, r.Path, body); err != nil {
			t.Errorf("snapshot: %s %s %s: %v", r.Method, r.Path, body, err)
		}
		if extra, err := s.UndeclaredFields(r.Method, r.Path, body); err != nil || len(extra) > 0 {
			t.Errorf("snapshot: %s %s sends undeclared fields %v (%v)", r.Method, r.Path, extra, err)
		}
	}
	// The other actions the driver sends.
	for _, a := range []string{"SendCtrlAltDel", "FlushMetrics"} {
		if err := s.Validate(context.Background(), "PUT", "/actions", []byte(`{"action_type":"`+a+`"}`)); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
}

func TestStartStopAgainstFake(t *testing.T) {
	d := &Driver{Binary: fake(t)}
	spec, record := recordedSpec(t)
	ctx := context.Background()

	h, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Alive(h) {
		t.Fatal("fake firecracker not alive after Start")
	}
	reqs, err := fctest.ReadRecord(record)
	if err != nil {
		t.Fatal(err)
	}
	want := Requests(spec, spec.Kernel)
	if len(reqs) < len(want) {
		t.Fatalf("fake saw %d requests, driver sends %d", len(reqs), len(want))
	}
	got := reqs[len(reqs)-len(want):]
	for i, r := range want {
		if got[i].Method != r.Method || got[i].Path != r.Path || got[i].Status/100 != 2 {
			t.Errorf("request %d: fake saw %s %s -> %d, want %s %s -> 2xx", i, got[i].Method, got[i].Path, got[i].Status, r.Method, r.Path)
		}
	}
	if b, _ := os.ReadFile(spec.ConsoleLog); len(b) == 0 {
		t.Error("nothing reached the console log")
	}
	st, err := d.Stats(ctx, h)
	if err != nil || st.MemoryRSSBytes == 0 {
		t.Errorf("stats: %+v %v", st, err)
	}

	// Graceful: no agent answers on vsock, so SendCtrlAltDel; the fake exits.
	start := time.Now()
	if err := d.Stop(ctx, h, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if d.Alive(h) || time.Since(start) > 8*time.Second {
		t.Fatalf("graceful stop: alive=%v after %s", d.Alive(h), time.Since(start))
	}
	reqs, _ = fctest.ReadRecord(record)
	if last := reqs[len(reqs)-1]; !strings.Contains(string(last.Body), "SendCtrlAltDel") {
		t.Fatalf("last request %s %s, want SendCtrlAltDel", last.Path, last.Body)
	}
	if err := d.Cleanup(ctx, h); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{h.Extra["api"], h.ControlSocket} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after cleanup", p)
		}
	}
}

func TestForcedStopWhenCtrlAltDelIgnored(t *testing.T) {
	d := &Driver{Binary: fake(t)}
	spec := testSpec(t)
	t.Setenv(fctest.EnvIgnoreCtrlAltDel, "1")
	h, err := d.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := d.Stop(context.Background(), h, time.Second); err != nil {
		t.Fatal(err)
	}
	if d.Alive(h) {
		t.Fatal("firecracker still alive after forced stop")
	}
	for i := 0; syscall.Kill(h.PID, 0) == nil; i++ {
		if i > 100 {
			t.Fatal("firecracker process never went away")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if el := time.Since(start); el < time.Second || el > 10*time.Second {
		t.Fatalf("forced stop took %s; want the 1s grace then a kill", el)
	}
}

func TestDiesDuringBoot(t *testing.T) {
	d := &Driver{Binary: fake(t)}
	spec := testSpec(t)
	t.Setenv(fctest.EnvDieOn, "InstanceStart")
	_, err := d.Start(context.Background(), spec)
	if err == nil || !strings.Contains(err.Error(), "exited during PUT /actions") {
		t.Fatalf("want a clear error naming the request, got %v", err)
	}
	for _, p := range []string{filepath.Join(spec.Dir, "firecracker.sock"), spec.ControlSocket} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s leaked after a failed boot", p)
		}
	}
	assertNoFake(t, spec)
}

func TestAPIErrorCarriesFirecrackersMessage(t *testing.T) {
	d := &Driver{Binary: fake(t)}
	spec := testSpec(t)
	t.Setenv(fctest.EnvFailOn, "/machine-config:Invalid vCPU count: the host has only 2 CPUs.")
	_, err := d.Start(context.Background(), spec)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Fault != "Invalid vCPU count: the host has only 2 CPUs." || apiErr.Path != "/machine-config" {
		t.Fatalf("want Firecracker's fault message verbatim, got %v", err)
	}
	if !strings.Contains(err.Error(), "firecracker refused PUT /machine-config (400): Invalid vCPU count") {
		t.Fatalf("message: %v", err)
	}
	assertNoFake(t, spec)
}

// assertNoFake checks no fake firecracker serving this spec is left.
func assertNoFake(t *testing.T, spec vmm.Spec) {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), spec.Dir) && strings.Contains(string(b), "firecracker") {
			st, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			if f := strings.Fields(string(st)); len(f) > 2 && f[2] != "Z" {
				t.Fatalf("firecracker %s leaked", e.Name())
			}
		}
	}
}

// A snapshot against the fake: the VM is paused and saved (state and
// memory files), resumed, and a fresh process for another VM (a fork)
// loads it with that VM's tap and vsock socket and runs on that VM's own
// disks; another version's snapshot is refused.
func TestSnapshotAgainstFake(t *testing.T) {
	d := &Driver{Binary: fake(t)}
	spec, record := recordedSpec(t)
	ctx := context.Background()
	h, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(spec.Dir, "state")
	version, err := d.Save(ctx, h, state)
	if err != nil || version == "" {
		t.Fatalf("save: %q %v", version, err)
	}
	for _, p := range []string{state, memFile(state)} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("snapshot file: %v", err)
		}
	}
	if err := d.Resume(ctx, h); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Stop(ctx, h, 0); _ = d.Cleanup(ctx, h) }()

	fork := testSpec(t)
	fork.VM.ID, fork.Tap = "fedcba9876543210", "bgtap9"
	if _, err := d.StartFrom(ctx, fork, state, "0.0.1"); !errors.Is(err, vmm.ErrSnapshotMismatch) {
		t.Fatalf("a snapshot of another version: %v", err)
	}
	fh, err := d.StartFrom(ctx, fork, state, version)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Stop(ctx, fh, 0); _ = d.Cleanup(ctx, fh) }()
	assertDisks(t, fh.PID, fork, spec)
	reqs, err := fctest.ReadRecord(record)
	if err != nil {
		t.Fatal(err)
	}
	last := reqs[len(reqs)-1]
	if last.Path != "/snapshot/load" || last.Status != 204 || !strings.Contains(string(last.Body), `"bgtap9"`) {
		t.Fatalf("last request %s %s -> %d", last.Path, last.Body, last.Status)
	}
	for _, r := range reqs {
		if r.Status/100 != 2 && r.Path != "/actions" {
			t.Errorf("the fake refused %s %s (%d): %s", r.Method, r.Path, r.Status, r.Body)
		}
	}
}

// assertDisks checks that the process pid holds every disk of spec open
// (compared by inode, so through links and jails) and none of other's.
func assertDisks(t *testing.T, pid int, spec, other vmm.Spec) {
	t.Helper()
	open := map[[2]uint64]bool{}
	fds, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	for _, fd := range fds {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", strconv.Itoa(pid), "fd", fd.Name()), &st) == nil {
			open[[2]uint64{st.Dev, st.Ino}] = true
		}
	}
	key := func(p string) [2]uint64 {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return [2]uint64{st.Dev, st.Ino}
	}
	for _, d := range spec.Disks {
		if !open[key(d.Path)] {
			t.Errorf("process %d does not hold %s", pid, d.Path)
		}
	}
	for _, d := range other.Disks {
		if open[key(d.Path)] {
			t.Errorf("process %d holds %s, a disk of the vm that was saved", pid, d.Path)
		}
	}
}

var (
	jailerOnce sync.Once
	jailerPath string
	jailerErr  error
)

// jailedDriver is the driver under the fake jailer, with its jails in a
// directory of the test's (on the same filesystem as testSpec's files). It
// needs root, as the jailer does.
func jailedDriver(t *testing.T) *Driver {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the jailer needs root (chroot, chown), and CI runs as root")
		}
		t.Skip("the jailer needs root")
	}
	fc := fake(t)
	jailerOnce.Do(func() { jailerPath, jailerErr = fctest.BuildJailer(context.Background(), filepath.Dir(fc)) })
	if jailerErr != nil {
		t.Fatalf("building the fake jailer: %v", jailerErr)
	}
	base, err := os.MkdirTemp("", "fcjail")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	return &Driver{Binary: fc, Jailer: &Jailer{Binary: jailerPath, UID: 65534, GID: 65534, ChrootBase: base}}
}

// Under the jailer: the VM boots chrooted and unprivileged; a snapshot is
// written in its jail and moved out as the daemon's own 0600 files; a fork
// loads it in a jail of its own, on its own disks, and the jail keeps no
// name of the snapshot once loaded; cleanup removes each jail.
func TestJailedSnapshotAgainstFake(t *testing.T) {
	d := jailedDriver(t)
	spec, record := recordedSpec(t)
	ctx := context.Background()
	h, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Stop(ctx, h, 0); _ = d.Cleanup(ctx, h) }()
	root := jailRoot(h)
	if !d.Alive(h) {
		t.Fatal("jailed fake not alive")
	}
	if got, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(h.PID), "root")); got != root {
		t.Errorf("the process's root is %q, want its jail %q", got, root)
	}
	if uid := procUID(t, h.PID); uid != "65534" {
		t.Errorf("the jailed process runs as uid %s", uid)
	}
	assertDisks(t, h.PID, spec, vmm.Spec{})

	state := filepath.Join(spec.Dir, "state")
	version, err := d.Save(ctx, h, state)
	if err != nil {
		t.Fatalf("save: %v", err)
	}
	for _, p := range []string{state, memFile(state)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("snapshot file: %v", err)
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o600 || st.Uid != 0 {
			t.Errorf("%s: mode %v uid %d, want 0600 and root's", p, fi.Mode().Perm(), st.Uid)
		}
	}
	if _, err := os.Stat(filepath.Join(root, jailedState)); !os.IsNotExist(err) {
		t.Errorf("the snapshot's state is still in the jail: %v", err)
	}
	if err := d.Resume(ctx, h); err != nil {
		t.Fatal(err)
	}

	fork := testSpec(t)
	fork.VM.ID, fork.Tap = "fedcba9876543210", "bgtap9"
	fh, err := d.StartFrom(ctx, fork, state, version)
	if err != nil {
		t.Fatal(err)
	}
	forkRoot := jailRoot(fh)
	assertDisks(t, fh.PID, fork, spec)
	for _, name := range []string{jailedState, memFile(jailedState)} {
		if _, err := os.Stat(filepath.Join(forkRoot, name)); !os.IsNotExist(err) {
			t.Errorf("%s left in the fork's jail after the load: %v", name, err)
		}
	}
	reqs, _ := fctest.ReadRecord(record)
	if last := reqs[len(reqs)-1]; last.Path != "/snapshot/load" || last.Status != 204 || !strings.Contains(string(last.Body), `"snapshot_path":"snapshot.state"`) {
		t.Fatalf("last request %s %s -> %d", last.Path, last.Body, last.Status)
	}
	if !d.Alive(h) || !d.Alive(fh) {
		t.Fatal("the saved vm and its fork must both run")
	}
	_ = d.Stop(ctx, fh, 0)
	if err := d.Cleanup(ctx, fh); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(forkRoot); !os.IsNotExist(err) {
		t.Errorf("the fork's jail is left after cleanup: %v", err)
	}
}

func procUID(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			return f[1]
		}
	}
	return ""
}
