package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A VM created with --network none has no network device at all, yet
// banger's SSH, vm cp's stream, plain ssh through ssh-config and
// published ports all reach it through the agent's tunnel, also after the
// daemon restarts.
func TestNetworkNone(t *testing.T) {
	w := newWorld(t)
	w.ok("vm", "create", "iso", "--network", "none", "--publish", "2223:22")
	v := w.show("iso")
	if v.IP != "" {
		t.Errorf("a vm without a network has ip %q", v.IP)
	}
	if out := w.ok("vm", "show", "iso"); !strings.Contains(out, "Network:") || !strings.Contains(out, "none") {
		t.Errorf("vm show does not say the network is none:\n%s", out)
	}
	if h := w.handles(v); h.Tap != "" {
		t.Errorf("a vm without a network took tap %s", h.Tap)
	}
	if strings.Contains(w.links(), "bgtap") {
		t.Errorf("a tap exists for a vm without a network:\n%s", w.links())
	}
	if links := strings.Fields(w.ok("vm", "ssh", "iso", "--", "ls", "/sys/class/net")); len(links) != 1 || links[0] != "lo" {
		t.Errorf("guest interfaces %v, want only lo", links)
	}
	// A route lookup only: no packet leaves.
	if r := w.banger("vm", "ssh", "iso", "--", "ip", "route", "get", "192.0.2.1"); r.code == 0 || !strings.Contains(r.stderr, "unreachable") {
		t.Errorf("the guest has a route out: exit %d, %s%s", r.code, r.stdout, r.stderr)
	}

	// A megabyte of stdin through ssh, the daemon and the tunnel, intact.
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	cmd := exec.Command("ip", "netns", "exec", w.ns, filepath.Join(binDir, "banger"), "--socket", w.socket,
		"vm", "ssh", "iso", "--", "sha256sum")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil || !strings.HasPrefix(string(out), hex.EncodeToString(sum[:])) {
		t.Errorf("1 MiB through the tunnel: %v, guest sum %q", err, out)
	}

	w.portAnswers(2223)
	// A terminal through the tunnel, on the image's own sshd.
	if out, code := w.runTTY("", "vm", "ssh", "-t", "iso", "--", "sh", "-c", "tty; stty size"); code != 0 || !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "40 120") {
		t.Errorf("vm ssh -t: exit %d, %q", code, out)
	}
	cfg := filepath.Join(w.dir, "ssh_config")
	if err := os.WriteFile(cfg, []byte(w.ok("vm", "ssh-config", "iso")), 0o600); err != nil {
		t.Fatal(err)
	}
	plainSSH := func() {
		t.Helper()
		out, err := exec.Command("ip", "netns", "exec", w.ns, "ssh", "-F", cfg, "-o", "BatchMode=yes", "iso.vm", "hostname").CombinedOutput()
		if err != nil || string(out) != "iso\n" {
			t.Errorf("plain ssh through the ssh-config ProxyCommand: %v\n%s", err, out)
		}
	}
	plainSSH()
	if r := w.banger("vm", "tunnel", "iso", "81"); r.code == 0 || !strings.Contains(r.stderr, "refused") {
		t.Errorf("a tunnel to a closed guest port: exit %d, %q", r.code, r.stderr)
	}

	// A new daemon adopts the VM and reaches it the same ways.
	w.ok("daemon", "stop")
	w.ok("daemon", "start")
	if out := w.ok("vm", "ssh", "iso", "--", "hostname"); out != "iso\n" {
		t.Errorf("vm ssh after a daemon restart: %q", out)
	}
	w.portAnswers(2223)
	plainSSH()
	w.ok("vm", "delete", "--force", "iso")
}

// With isolate_vms two VMs on the bridge reach the host (its DNS server
// on the bridge address) but not each other, neither directly nor routed
// through the host. A daemon restarted without it lifts that on the
// running VMs' taps.
func TestIsolateVMs(t *testing.T) {
	w := newWorld(t)
	base, err := os.ReadFile(w.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.config, append(append([]byte{}, base...), "isolate_vms = true\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	w.ok("vm", "create", "a")
	w.ok("vm", "create", "b")
	gw, bIP := "172.16.0.1", w.show("b").IP
	reach := func(addr string) bool {
		t.Helper()
		r := w.banger("vm", "ssh", "a", "--", "timeout", "5", "bash", "-c", "exec 3<>/dev/tcp/"+addr)
		return r.code == 0
	}
	if out := w.ok("vm", "ssh", "a", "--", "getent", "hosts", "b.vm"); !strings.HasPrefix(out, bIP+" ") {
		t.Errorf("a resolves b.vm as %q, want %s", out, bIP)
	}
	if !reach(gw + "/53") {
		t.Error("with isolate_vms a guest cannot reach the host's DNS server on the bridge")
	}
	if reach(bIP + "/22") {
		t.Error("with isolate_vms vm a reaches vm b's sshd over the bridge")
	}
	// Routed through the host instead of bridged: the forward chain's drop.
	w.ok("vm", "ssh", "a", "--", "ip", "route", "add", bIP+"/32", "via", gw)
	if reach(bIP + "/22") {
		t.Error("with isolate_vms vm a reaches vm b's sshd routed through the host")
	}
	w.ok("vm", "ssh", "a", "--", "ip", "route", "del", bIP+"/32")

	if err := os.WriteFile(w.config, base, 0o644); err != nil {
		t.Fatal(err)
	}
	w.ok("daemon", "stop")
	w.ok("daemon", "start")
	if !reach(bIP + "/22") {
		t.Error("after a restart without isolate_vms vm a still cannot reach vm b")
	}
}
