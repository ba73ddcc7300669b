package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFork: copies of a running VM run the processes it ran and hold its
// files and workspace, and each is a machine of its own: its hostname,
// address, pinned SSH host key (plain OpenSSH checks it), machine-id,
// random numbers and a clock on the host's; each exports its workspace
// to its own branch. A stopped VM is not forked.
func TestFork(t *testing.T) {
	w := newWorld(t)
	_, repo, g := w.hostRepo()
	writeFile(t, filepath.Join(repo, "README"), "app\n", 0o644)
	g("add", "-A")
	g("commit", "-q", "-m", "first")

	w.ok("vm", "create", "src")
	w.ok("workspace", "prepare", "src", repo)
	w.ok("vm", "ssh", "src", "--", "sh", "-c", "echo made-before > /root/marker; setsid sleep 4343 </dev/null >/dev/null 2>&1 & sync")
	before := w.show("src")

	start := time.Now()
	out := w.ok("vm", "fork", "src", "f", "--count", "2")
	t.Logf("vm fork --count 2 took %s:\n%s", time.Since(start).Round(10*time.Millisecond), out)
	time.Sleep(2 * time.Second) // the copies' clocks must have been set, not merely carried

	type seen struct{ hostname, machineID, random, ip string }
	check := "hostname; cat /etc/machine-id; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; " +
		"ip -4 -o addr show eth0 | awk '{print $4}'; pgrep -f 'slee[p] 4343' >/dev/null && echo sleeping; cat /root/marker; date +%s.%N"
	got := map[string]seen{}
	for _, name := range []string{"src", "f-1", "f-2"} {
		out := w.ok("vm", "ssh", name, "--", "sh", "-c", check)
		host := float64(time.Now().UnixNano()) / 1e9
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 7 || lines[4] != "sleeping" || lines[5] != "made-before" {
			t.Fatalf("vm %s after the fork:\n%s", name, out)
		}
		if guest, err := strconv.ParseFloat(lines[6], 64); err != nil || guest < host-2 || guest > host+2 {
			t.Errorf("vm %s's clock %s is not within 2 s of the host's %.3f", name, lines[6], host)
		}
		v := w.show(name)
		if v.State != "running" || lines[3] != v.IP+"/24" {
			t.Errorf("vm %s is %s at %s, and its guest has %s", name, v.State, v.IP, lines[3])
		}
		got[name] = seen{hostname: lines[0], machineID: lines[1], random: lines[2], ip: v.IP}
	}
	if got["src"].ip != before.IP {
		t.Errorf("the source moved from %s to %s", before.IP, got["src"].ip)
	}
	for _, a := range []string{"src", "f-1", "f-2"} {
		if got[a].hostname != a {
			t.Errorf("vm %s calls itself %q", a, got[a].hostname)
		}
		for _, b := range []string{"src", "f-1", "f-2"} {
			if a >= b {
				continue
			}
			if got[a].machineID == got[b].machineID || got[a].random == got[b].random || got[a].ip == got[b].ip {
				t.Errorf("vms %s and %s share an identity: %+v and %+v", a, b, got[a], got[b])
			}
		}
	}

	// Plain OpenSSH, over the bridge, checks each copy's host key against
	// the one banger pinned for it: the copies' sshd serves its own.
	for _, name := range []string{"f-1", "f-2", "src"} {
		cfg := filepath.Join(w.dir, "ssh_config_"+name)
		if err := os.WriteFile(cfg, []byte(w.ok("vm", "ssh-config", name)), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("ip", "netns", "exec", w.ns, "ssh", "-F", cfg, "-o", "BatchMode=yes", name+".vm", "hostname").CombinedOutput()
		if err != nil || string(out) != name+"\n" {
			t.Errorf("plain ssh to %s with its pinned key: %v\n%s", name, err, out)
		}
	}

	// Each copy's workspace exports to a branch of its own.
	for _, name := range []string{"f-1", "f-2"} {
		w.ok("vm", "ssh", name, "--", "sh", "-c", "cd /work/app && echo "+name+" > who && git add who && git commit -q -m 'from "+name+"'")
		w.ok("workspace", "export", name, repo)
		if log := g("log", "--format=%s", "-2", "banger/"+name); !strings.Contains(log, "from "+name+"\n") {
			t.Errorf("banger/%s:\n%s", name, log)
		}
		if who := g("show", "banger/"+name+":who"); who != name+"\n" {
			t.Errorf("banger/%s holds who=%q", name, who)
		}
	}

	w.ok("vm", "stop", "src")
	if r := w.banger("vm", "fork", "src", "late"); r.code == 0 || !strings.Contains(r.stderr, "vm start src") {
		t.Errorf("a fork of a stopped vm: exit %d, %q", r.code, r.stderr)
	}
	if r := w.banger("vm", "show", "late"); r.code == 0 {
		t.Error("a refused fork left a vm")
	}
	w.invariants("after forks")
}
