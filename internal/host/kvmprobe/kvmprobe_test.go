package kvmprobe

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/agent"
	"github.com/banger-dev/banger/internal/testimage"
)

// fakeHost is a host whose /dev/kvm is a plain file, whose sysfs is a
// temporary directory and whose boots are counted instead of run.
type fakeHost struct {
	host
	boots   int
	bootsOK bool
	version string
	rel     string
}

func newFake(t *testing.T) *fakeHost {
	t.Helper()
	dir := t.TempDir()
	dev := filepath.Join(dir, "kvm")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sys", "module", "kvm"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fakeHost{bootsOK: true, version: "QEMU emulator version 7.2.22", rel: "6.1.0"}
	f.host = host{
		sysfs: filepath.Join(dir, "sys"), devKVM: dev, qemu: "sh", timeout: time.Second, now: time.Now,
		boot: func(_ context.Context, b bootSpec) (bool, string, error) {
			f.boots++
			if b.accel != "kvm" {
				t.Errorf("probe booted with accel %q", b.accel)
			}
			return f.bootsOK, "hung in real mode", nil
		},
		qemuVersion: func(context.Context, string) (string, error) { return f.version, nil },
		release:     func() string { return f.rel },
	}
	return f
}

func writeKernel(t *testing.T) string {
	t.Helper()
	k := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(k, []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNoDevice(t *testing.T) {
	f := newFake(t)
	f.devKVM = filepath.Join(t.TempDir(), "nokvm")
	v, err := f.probe(context.Background(), writeKernel(t), "agent", "")
	if err != nil || v.Usable || v.Cause != CauseNoDevice || !strings.Contains(v.Reason, "does not exist") {
		t.Fatalf("verdict %+v, err %v; want not usable, no device", v, err)
	}
	if f.boots != 0 {
		t.Fatal("booted without /dev/kvm")
	}
}

func TestNoAccess(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root opens any file; access is only refused to other users")
	}
	f := newFake(t)
	if err := os.Chmod(f.devKVM, 0o400); err != nil {
		t.Fatal(err)
	}
	v, _ := f.probe(context.Background(), writeKernel(t), "agent", "")
	if v.Usable || v.Cause != CauseNoAccess || !strings.Contains(v.Reason, "cannot open it read-write") {
		t.Fatalf("verdict %+v; want not usable, no access", v)
	}
}

func TestPVMIsRefusedWithoutBoot(t *testing.T) {
	f := newFake(t)
	if err := os.MkdirAll(filepath.Join(f.sysfs, "module", "kvm_pvm"), 0o755); err != nil {
		t.Fatal(err)
	}
	v, err := f.probe(context.Background(), writeKernel(t), "agent", filepath.Join(t.TempDir(), "cache.json"))
	if err != nil || v.Usable || v.Cause != CauseIncompatible || v.Reason != ReasonPVM {
		t.Fatalf("verdict %+v, err %v; want not usable: %s", v, err, ReasonPVM)
	}
	if f.boots != 0 {
		t.Fatal("booted a probe on a PVM host")
	}
}

func TestBootDecides(t *testing.T) {
	for _, ok := range []bool{true, false} {
		f := newFake(t)
		f.bootsOK = ok
		v, err := f.probe(context.Background(), writeKernel(t), "agent", "")
		if err != nil || v.Usable != ok || f.boots != 1 {
			t.Fatalf("boot ok=%v: verdict %+v, err %v, boots %d", ok, v, err, f.boots)
		}
		if !ok && (v.Cause != CauseBootFailed || !strings.Contains(v.Reason, "hung in real mode")) {
			t.Fatalf("failed boot gave %+v", v)
		}
	}
}

func TestNotProbed(t *testing.T) {
	f := newFake(t)
	v, err := f.probe(context.Background(), "", "agent", "")
	if err == nil || v.Usable || v.Cause != CauseNotProbed {
		t.Fatalf("no kernel: verdict %+v, err %v", v, err)
	}
	f.qemu = "no-such-qemu-here"
	v, err = f.probe(context.Background(), writeKernel(t), "agent", "")
	if err == nil || v.Usable || v.Cause != CauseNotProbed || !strings.Contains(v.Reason, "no-such-qemu-here not found") {
		t.Fatalf("no qemu: verdict %+v, err %v", v, err)
	}
	if f.boots != 0 {
		t.Fatal("booted without a kernel or qemu")
	}
}

func TestCacheHitAndMiss(t *testing.T) {
	f := newFake(t)
	kernel := writeKernel(t)
	cache := filepath.Join(t.TempDir(), "sub", "kvmprobe.json")
	probe := func(wantBoots int, what string) Verdict {
		t.Helper()
		v, err := f.probe(context.Background(), kernel, "agent", cache)
		if err != nil {
			t.Fatal(err)
		}
		if f.boots != wantBoots {
			t.Fatalf("%s: %d boots, want %d", what, f.boots, wantBoots)
		}
		return v
	}
	first := probe(1, "first probe")
	if !first.Usable || first.Key == "" {
		t.Fatalf("first verdict %+v", first)
	}
	again := probe(1, "same key")
	if again.Key != first.Key || !again.Checked.Equal(first.Checked) || again.Reason != first.Reason {
		t.Fatalf("cache hit returned %+v, want %+v", again, first)
	}

	f.version = "QEMU emulator version 8.0.0"
	probe(2, "new qemu")
	probe(2, "new qemu again")
	f.rel = "6.2.0"
	probe(3, "new host kernel")
	if err := os.WriteFile(kernel, []byte("another kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	probe(4, "kernel changed size")
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(kernel, later, later); err != nil {
		t.Fatal(err)
	}
	probe(5, "kernel touched")

	// A failed boot is cached too, and a corrupt cache is a miss.
	f.bootsOK = false
	f.rel = "6.3.0"
	if v := probe(6, "failing boot"); v.Usable {
		t.Fatal("failed boot said usable")
	}
	if v := probe(6, "failing boot cached"); v.Usable || v.Cause != CauseBootFailed {
		t.Fatalf("cached failure %+v", v)
	}
	if err := os.WriteFile(cache, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	probe(7, "corrupt cache")
}

// requireBoot skips unless real boots can run here; under CI=true they
// must (the end-to-end suite has cached a kernel by then).
func requireBoot(t *testing.T) string {
	t.Helper()
	kernel := testimage.Kernel(t)
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root"
	} else if _, err := exec.LookPath(QEMU); err != nil {
		why = QEMU + " is not installed"
	}
	if why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true, but the probe boot %s", why)
		}
		t.Skip(why)
	}
	return kernel
}

func buildAgent(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "../../../cmd/banger-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building banger-agent: %v\n%s", err, out)
	}
	return filepath.Join(dir, "banger-agent")
}

// TestProbeThisHost runs the real probe. Where kvm_pvm is loaded (the
// project's machines) it must refuse KVM at once; elsewhere it boots.
func TestProbeThisHost(t *testing.T) {
	kernel := requireBoot(t)
	isPVM := pvm("/sys")
	agent := "banger-agent"
	if !isPVM {
		agent = buildAgent(t)
	}
	start := time.Now()
	v, err := Probe(context.Background(), kernel, agent, filepath.Join(t.TempDir(), "kvmprobe.json"))
	took := time.Since(start)
	t.Logf("verdict after %s: %+v (err %v)", took.Round(time.Millisecond), v, err)
	if isPVM {
		if err != nil || v.Usable || v.Cause != CauseIncompatible {
			t.Fatalf("on a kvm_pvm host the probe said %+v, %v; want not usable (incompatible)", v, err)
		}
		if took > time.Second {
			t.Fatalf("the PVM verdict took %s; it needs no boot", took)
		}
		return
	}
	if _, statErr := os.Stat("/dev/kvm"); statErr != nil && (v.Usable || v.Cause != CauseNoDevice) {
		t.Fatalf("no /dev/kvm, yet the probe said %+v", v)
	}
}

// TestBootGuestUnderTCG proves the probe's payload: the guest kernel boots
// the minimal initramfs and the agent prints the marker. TCG runs anywhere.
func TestBootGuestUnderTCG(t *testing.T) {
	kernel := requireBoot(t)
	qemu, _ := exec.LookPath(QEMU)
	agent := buildAgent(t)
	start := time.Now()
	ok, detail, err := bootGuest(context.Background(), bootSpec{qemu: qemu, accel: "tcg", kernel: kernel, agent: agent, timeout: 30 * time.Second})
	t.Logf("TCG probe boot: ok=%v after %s (%s)", ok, time.Since(start).Round(time.Millisecond), detail)
	if err != nil || !ok {
		t.Fatalf("TCG probe boot: ok=%v, detail %q, err %v", ok, detail, err)
	}

	// A boot that cannot reach userspace in time is killed and reported.
	start = time.Now()
	ok, detail, err = bootGuest(context.Background(), bootSpec{qemu: qemu, accel: "tcg", kernel: kernel, agent: agent, timeout: 300 * time.Millisecond})
	if err != nil || ok || !strings.Contains(detail, "no sign of userspace within 300ms") {
		t.Fatalf("short boot: ok=%v, detail %q, err %v", ok, detail, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the timed-out boot took %s to clean up", took)
	}

	// A kernel QEMU cannot load makes it exit: reported, not waited for.
	bogus := filepath.Join(t.TempDir(), "bogus")
	if err := os.WriteFile(bogus, []byte("not a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok, detail, err = bootGuest(context.Background(), bootSpec{qemu: qemu, accel: "tcg", kernel: bogus, agent: agent, timeout: 30 * time.Second})
	if err != nil || ok || !strings.Contains(detail, "qemu exited") {
		t.Fatalf("bogus kernel: ok=%v, detail %q, err %v", ok, detail, err)
	}
}

func TestArgs(t *testing.T) {
	b := bootSpec{qemu: "/usr/bin/qemu-system-x86_64", accel: "kvm", kernel: "/k"}
	got := strings.Join(b.args("/i", "/log"), " ")
	want := "/usr/bin/qemu-system-x86_64 -M microvm -accel kvm -cpu host -m 256 -nodefaults -no-user-config -display none -no-reboot " +
		"-kernel /k -initrd /i -append console=ttyS0 panic=-1 banger.probe=1 -serial file:/log"
	if got != want {
		t.Fatalf("args\n%s\nwant\n%s", got, want)
	}
	if agent.ProbeMarker != Marker || !strings.Contains(" "+Cmdline+" ", " "+agent.ProbeParam+" ") {
		t.Fatalf("the agent prints %q on %q; the probe expects %q on %q", agent.ProbeMarker, agent.ProbeParam, Marker, Cmdline)
	}
	if strings.Contains(Cmdline, Marker) {
		t.Fatal("the kernel echoes its command line to the log: it must not hold the marker")
	}
}
