package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestInstantRun: the first boot of an image leaves a template; later
// runs start from it, and what a command sees there is what it sees in a
// cold boot (--cold): the image, /work, its own hostname; two instant VMs
// of one template differ in machine-id and random numbers. A template
// that no longer restores (as if saved by another QEMU) is replaced by a
// cold boot, and the template goes with its image.
func TestInstantRun(t *testing.T) {
	w := newWorld(t)
	templates := filepath.Join(w.stateDir, "templates")
	w.ok("vm", "run", "--rm", "--", "true")
	entries, _ := os.ReadDir(templates)
	if len(entries) != 1 {
		t.Fatalf("after the first boot %d templates, want 1", len(entries))
	}

	// Also: the TCP sock_diag modules the identity step uses were loaded
	// before the template was saved, so the cold VM has them too; and no
	// SSH session regenerated the dynamic motd.
	look := "hostname; grep -c '^tcp_diag ' /proc/modules; test -e /run/motd.dynamic && echo motd-regenerated || echo motd-static; cat /etc/os-release; mount | grep -c ' /work '; cat /etc/machine-id; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo"
	run := func(name string, args ...string) []string {
		start := time.Now()
		out := w.ok(append(append([]string{"vm", "run", "--rm", "--name", name}, args...), "--", "sh", "-c", look)...)
		t.Logf("vm run %s %v: %s", name, args, time.Since(start).Round(10*time.Millisecond))
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 4 || lines[0] != name {
			t.Fatalf("vm run %s:\n%s", name, out)
		}
		return lines
	}
	cold := run("cold", "--cold")
	a := run("fast-a")
	b := run("fast-b")
	strip := func(l []string) string { return strings.Join(l[1:len(l)-2], "\n") }
	if strip(a) != strip(cold) || strip(b) != strip(cold) {
		t.Errorf("an instant run differs from a cold one:\ncold:\n%s\ninstant:\n%s", strip(cold), strip(a))
	}
	for _, l := range [][]string{cold, a} {
		if l[1] != "1" || l[2] != "motd-static" {
			t.Errorf("vm %s: tcp_diag loaded %q (want 1), motd %q (want motd-static)", l[0], l[1], l[2])
		}
	}
	if !strings.Contains(strip(a), "Debian GNU/Linux 12") || a[len(a)-3] != "1" {
		t.Errorf("instant run: no debian-12 or no /work:\n%s", strings.Join(a, "\n"))
	}
	if a[len(a)-2] == b[len(b)-2] || a[len(a)-1] == b[len(b)-1] {
		t.Errorf("two instant vms share a machine-id or random numbers:\n%s\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
	log, _ := os.ReadFile(filepath.Join(w.stateDir, "bangerd.log"))
	for name, want := range map[string]bool{"cold": false, "fast-a": true, "fast-b": true} {
		if got := strings.Contains(string(log), `msg="vm started from a template" vm=`+name+" "); got != want {
			t.Errorf("vm %s started from a template: %v, want %v", name, got, want)
		}
	}

	// A template whose state this QEMU refuses: the run boots cold, and
	// leaves a new template.
	meta := filepath.Join(templates, entries[0].Name(), "template.json")
	var m map[string]any
	b0, _ := os.ReadFile(meta)
	if err := json.Unmarshal(b0, &m); err != nil {
		t.Fatalf("template.json: %v\n%s", err, b0)
	}
	m["version"] = "0.0.1 another qemu"
	b1, _ := json.Marshal(m)
	if err := os.WriteFile(meta, b1, 0o600); err != nil {
		t.Fatal(err)
	}
	run("stale")
	if b2, _ := os.ReadFile(meta); strings.Contains(string(b2), "another qemu") || len(b2) == 0 {
		t.Errorf("the stale template was not replaced: %s", b2)
	}

	w.ok("image", "delete", "debian-12")
	if entries, _ := os.ReadDir(templates); len(entries) != 0 {
		t.Errorf("image delete left %d templates", len(entries))
	}
	w.invariants("after instant runs")
}
