package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
)

// The running daemon takes edited defaults on `daemon reload` and on
// SIGHUP, names the keys that need a restart, and keeps its configuration
// when the file is broken. No guest boots: creates are --no-start.
func TestDaemonReload(t *testing.T) {
	w := newWorld(t)
	base, err := os.ReadFile(w.config)
	if err != nil {
		t.Fatal(err)
	}
	w.ok("daemon", "start")
	vcpus := func(name string) int {
		var v struct {
			VCPUs int `json:"vcpus"`
		}
		if err := json.Unmarshal([]byte(w.ok("vm", "show", name, "--json")), &v); err != nil {
			t.Fatal(err)
		}
		return v.VCPUs
	}
	write := func(extra string) {
		if err := os.WriteFile(w.config, append(append([]byte{}, base...), extra...), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	write("default_vcpus = 1\nbridge = \"bgother0\"\n")
	out := w.ok("daemon", "reload")
	if !strings.Contains(out, "applied: default_vcpus") || !strings.Contains(out, "after a restart") || !strings.Contains(out, "bridge") {
		t.Errorf("reload said %q", out)
	}
	w.ok("vm", "create", "one", "--no-start")
	if n := vcpus("one"); n != 1 {
		t.Errorf("a vm created after the reload has %d vCPUs, want the new default 1", n)
	}

	write("default_vcpus = 3\n")
	if err := syscall.Kill(w.daemonPID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the daemon to reload on SIGHUP", func() bool {
		log, _ := os.ReadFile(w.stateDir + "/bangerd.log")
		return strings.Count(string(log), "configuration reloaded") >= 2
	})
	w.ok("vm", "create", "three", "--no-start")
	if n := vcpus("three"); n != 3 {
		t.Errorf("a vm created after SIGHUP has %d vCPUs, want 3", n)
	}

	write("default_vcpus = \"many\"\n")
	if r := w.banger("daemon", "reload"); r.code == 0 || !strings.Contains(r.stderr, "nothing changed") {
		t.Errorf("reloading a broken file: exit %d, %q", r.code, r.stderr)
	}
	w.ok("vm", "create", "still", "--no-start")
	if n := vcpus("still"); n != 3 {
		t.Errorf("after a refused reload a new vm has %d vCPUs, want 3 still", n)
	}
}
