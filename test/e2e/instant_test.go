package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestInstantRun: the first boot of an image leaves a template; later
// runs start from it, and what a command sees there is what it sees in a
// cold boot (--cold): the image, /work, its own hostname; two instant VMs
// of one template differ in machine-id and random numbers. A template
// that no longer restores (as if saved by another QEMU) is replaced by a
// cold boot, and the template goes with its image. Instant VMs share the
// template's memory (sharedMemory).
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
	w.sharedMemory(filepath.Join(templates, entries[0].Name(), "memory.ram"))
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

// sharedMemory: an instant VM maps the template's RAM file copy-on-write,
// so most of its guest memory in use is the template's pages, not copies
// of its own; and a guest that fills and frees memory leaves that file as
// it was (free page reporting, say, would punch holes in it, zeroing
// those pages under every other VM of the template).
func (w *world) sharedMemory(ram string) {
	t := w.t
	t.Helper()
	if fi, err := os.Stat(ram); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("the template's memory file %s is %v, want mode 0600 (it is guest RAM)", ram, fi.Mode())
	}
	before := fileSum(t, ram)
	w.ok("vm", "create", "shared")
	pid := w.handles(w.show("shared")).PID
	fromFile, copied := mappingKB(t, pid, ram)
	t.Logf("instant vm: %d KiB of guest memory in use from the template's file, %d KiB its own copies", fromFile, copied)
	if fromFile <= copied {
		t.Errorf("an instant vm holds %d KiB of its own copies of guest memory and only %d KiB from the template's %s: its memory is not shared", copied, fromFile, ram)
	}
	w.ok("vm", "ssh", "shared", "--", "sh", "-c", "head -c 100M /dev/urandom > /dev/shm/fill && sync && rm /dev/shm/fill && sleep 4")
	w.ok("vm", "delete", "--force", "shared")
	if after := fileSum(t, ram); after != before {
		t.Errorf("the template's memory file changed while an instant vm filled and freed memory: sha256 %s, was %s", after, before)
	}
}

// mappingKB reads what process pid's mapping of file holds resident: pages
// of the file, and private copies (anonymous, copy-on-write).
func mappingKB(t *testing.T, pid int, file string) (fromFile, copied int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	// By inode: the path smaps prints is the one from QEMU's mount
	// namespace (ip netns exec makes one), which differs from this
	// test's under a chroot whose /tmp is a mount of its own.
	inode := strconv.FormatUint(fi.Sys().(*syscall.Stat_t).Ino, 10)
	in, found := false, false
	var rss int64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			in = len(f) >= 6 && f[4] == inode && filepath.Base(f[5]) == filepath.Base(file)
			found = found || in
			continue
		}
		if !in || len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Rss:":
			rss += n
		case "Anonymous:":
			copied += n
		}
	}
	if !found {
		t.Fatalf("process %d does not map %s", pid, file)
	}
	return rss - copied, copied
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
