package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/clockskew"
)

// skew measures the guest's clock against the host's over one SSH session
// (clockskew): the skew (positive: the guest is ahead) and its bound.
func (w *world) skew(vm string) (skew, bound time.Duration) {
	w.t.Helper()
	full := append([]string{"netns", "exec", w.ns, filepath.Join(binDir, "banger"),
		"--socket", w.socket, "--state-dir", w.stateDir, "--config", w.config,
		"vm", "ssh", vm, "--"}, clockskew.GuestCommand...)
	cmd := exec.Command("ip", full...)
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(w.dir, "cache"))
	in, err := cmd.StdinPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	defer func() { in.Close(); _ = cmd.Wait() }()
	skew, bound, err = clockskew.Measure(in, bufio.NewReader(out), 20)
	if err != nil {
		w.t.Fatal(err)
	}
	return skew, bound
}

// The guest's clock starts on the host's and stays within 100 ms of it
// under load, even after something in the guest moved it. vm cp runs
// meanwhile, under that load. Then the guest reboots itself (banger boots
// it again, same disks) and powers itself off (stopped, no error).
func TestGuestEveryday(t *testing.T) {
	w := newWorld(t)
	w.ok("vm", "create", "clk", "--publish", "2222:22")
	w.publishedPort("clk", 2222)
	if cs := strings.TrimSpace(w.ok("vm", "ssh", "clk", "--", "cat", "/sys/devices/system/clocksource/clocksource0/current_clocksource")); cs != "tsc" {
		t.Errorf("clocksource %q, want tsc (jiffies drift by seconds a minute under TCG)", cs)
	}
	if s, b := w.skew("clk"); s.Abs() > 100*time.Millisecond-b {
		t.Errorf("after boot the guest's clock is %v off the host's (±%v), want within 100 ms", s, b)
	}
	// Five seconds ahead, and both vCPUs busy for the rest of the test.
	w.ok("vm", "ssh", "clk", "--", "sh", "-c",
		`date -s @$(( $(date +%s) + 5 )) >/dev/null && for i in 1 2; do nohup sh -c 'while :; do :; done' >/dev/null 2>&1 & done`)
	if s, _ := w.skew("clk"); s < 3*time.Second { // date -s drops the fraction
		t.Fatalf("setting the guest's clock ahead did not take: skew %v", s)
	}
	// Long enough for two of the daemon's clock rounds (every 30 s), and
	// for drift under load to show.
	deadline := time.Now().Add(75 * time.Second)
	w.copyRoundTrip("clk")
	time.Sleep(time.Until(deadline))
	s, b := w.skew("clk")
	t.Logf("guest clock skew after 75 s under load: %v (±%v)", s, b)
	if log, err := os.ReadFile(filepath.Join(w.stateDir, "bangerd.log")); err == nil {
		for _, l := range strings.Split(string(log), "\n") {
			if strings.Contains(l, "clock") {
				t.Log(l)
			}
		}
	}
	if s.Abs() > 100*time.Millisecond-b {
		t.Errorf("under load the guest's clock is %v off the host's (±%v), want within 100 ms", s, b)
	}

	w.guestRebootAndPoweroff("clk", 2222)
}

// publishedPort checks that the host's loopback port reaches the guest's
// sshd, and that no other VM can take it.
func (w *world) publishedPort(vm string, port int) {
	t := w.t
	t.Helper()
	if out := w.ok("vm", "show", vm); !strings.Contains(out, fmt.Sprintf("127.0.0.1:%d->22/tcp", port)) {
		t.Errorf("vm show does not list the published port:\n%s", out)
	}
	w.portAnswers(port)
	r := w.banger("vm", "create", "clash", "--no-start", "--publish", fmt.Sprintf("%d:80", port))
	if r.code == 0 || !strings.Contains(r.stderr, "already published by vm "+vm) {
		t.Errorf("a second vm publishing port %d: exit %d, %q", port, r.code, r.stderr)
	}
	if r := w.banger("vm", "show", "clash"); r.code == 0 {
		t.Error("the refused create left a vm")
	}
}

// portAnswers reads the guest's sshd banner through a published port.
func (w *world) portAnswers(port int) {
	w.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", w.ns, "timeout", "20", "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d && head -c 8 <&3", port)).CombinedOutput()
	if err != nil || string(out) != "SSH-2.0-" {
		w.t.Errorf("127.0.0.1:%d answered %q, %v; want the guest's sshd banner", port, out, err)
	}
}

// guestRebootAndPoweroff has the guest reboot itself (it comes back with
// its disks and published port) and then power itself off.
func (w *world) guestRebootAndPoweroff(vm string, port int) {
	t := w.t
	t.Helper()
	bootID := func() string {
		return strings.TrimSpace(w.ok("vm", "ssh", vm, "--", "cat", "/proc/sys/kernel/random/boot_id"))
	}
	first := bootID()
	w.ok("vm", "ssh", vm, "--", "sh", "-c", "echo kept > /work/kept && echo kept > /root/kept && sync")
	w.ok("vm", "ssh", vm, "--", "sh", "-c", "(sleep 1; systemctl reboot) >/dev/null 2>&1 &")
	waitFor(t, "the rebooted guest back with a new boot", func() bool {
		r := w.banger("vm", "ssh", vm, "--", "cat", "/proc/sys/kernel/random/boot_id")
		return r.code == 0 && strings.TrimSpace(r.stdout) != first
	})
	if out := w.ok("vm", "ssh", vm, "--", "cat", "/work/kept", "/root/kept"); out != "kept\nkept\n" {
		t.Errorf("after a reboot the disks hold %q", out)
	}
	if v := w.show(vm); v.State != "running" {
		t.Errorf("after a reboot the vm is %s (%s)", v.State, v.Error)
	}
	w.portAnswers(port)
	w.ok("vm", "ssh", vm, "--", "sh", "-c", "(sleep 1; systemctl poweroff) >/dev/null 2>&1 &")
	waitFor(t, "the vm stopped after the guest's poweroff", func() bool { return w.show(vm).State == "stopped" })
	if v := w.show(vm); v.Error != "" {
		t.Errorf("a guest poweroff left the error %q", v.Error)
	}
	if pids := w.vmmPIDs(); len(pids) != 0 {
		t.Errorf("VMMs left after the guest's poweroff: %v", pids)
	}
}
