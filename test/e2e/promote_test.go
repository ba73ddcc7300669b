package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A VM set up by hand becomes an image: both VMs made from it have the
// change (links, modes, a fifo kept; /work not), each its own hostname,
// host key and machine-id. A promote is refused while the VM runs or
// when the name is taken, and a daemon killed in the middle of one leaves
// no image, no VMM and a VM that boots as before.
func TestImagePromote(t *testing.T) {
	w := newWorld(t)
	w.ok("vm", "create", "src")
	setup := `set -e
echo promoted > /etc/motd
mkdir -p /opt/p
head -c 1048576 /dev/urandom > /opt/p/blob
ln /opt/p/blob /opt/p/hard
cp /bin/true /opt/p/suid && chmod 4755 /opt/p/suid
mkfifo /opt/p/fifo
ln -s ../p/blob /opt/p/link
echo mine > /work/data
sha256sum /opt/p/blob | cut -d' ' -f1`
	sum := strings.TrimSpace(w.ok("vm", "ssh", "src", "--", "sh", "-c", setup))
	identity := "cat /etc/machine-id; hostname; cat /etc/ssh/ssh_host_ed25519_key.pub"
	srcID := w.ok("vm", "ssh", "src", "--", "sh", "-c", identity)

	if r := w.banger("image", "promote", "src", "nope"); r.code == 0 || !strings.Contains(r.stderr, "vm stop src") {
		t.Errorf("promote of a running vm: exit %d, %q", r.code, r.stderr)
	}
	w.ok("vm", "stop", "src")
	if r := w.banger("image", "promote", "src", "debian-12"); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("promote onto an existing name: exit %d, %q", r.code, r.stderr)
	}
	w.ok("image", "promote", "src", "made")
	var im struct {
		Source string `json:"source"`
	}
	if err := json.Unmarshal([]byte(w.ok("image", "show", "--json", "made")), &im); err != nil || !strings.Contains(im.Source, "promoted from vm src") {
		t.Errorf("image show of the promoted image: %+v %v", im, err)
	}

	check := `set -e
cat /etc/motd
sha256sum /opt/p/blob | cut -d' ' -f1
test "$(stat -c %i /opt/p/blob)" = "$(stat -c %i /opt/p/hard)" && echo linked
stat -c %a /opt/p/suid
test -p /opt/p/fifo && echo fifo
readlink /opt/p/link
test -e /work/data && echo work-came-along || echo work-fresh`
	want := "promoted\n" + sum + "\nlinked\n4755\nfifo\n../p/blob\nwork-fresh\n"
	ids := map[string]bool{srcID: true}
	for _, n := range []string{"a", "b"} {
		w.ok("vm", "create", "--image", "made", n)
		if out := w.ok("vm", "ssh", n, "--", "sh", "-c", check); out != want {
			t.Errorf("vm %s from the promoted image:\n%s\nwant:\n%s", n, out, want)
		}
		id := w.ok("vm", "ssh", n, "--", "sh", "-c", identity)
		lines := strings.Split(id, "\n")
		if len(lines) < 3 || lines[1] != n || lines[0] == "" {
			t.Errorf("vm %s identity:\n%s", n, id)
		}
		for other := range ids {
			o := strings.Split(other, "\n")
			if o[0] == lines[0] || o[2] == lines[2] {
				t.Errorf("vm %s shares machine-id or host key with another:\n%s\n--\n%s", n, id, other)
			}
		}
		ids[id] = true
	}
	w.ok("vm", "delete", "--force", "a", "b")

	// Killed in the middle: the op's record says so, nothing is made, no
	// VMM is left, and the VM boots as before.
	opID := strings.TrimSpace(w.ok("image", "promote", "--detach", "src", "half"))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var o struct {
			Phase string `json:"phase"`
			State string `json:"state"`
		}
		if err := json.Unmarshal([]byte(w.ok("op", "status", "--json", opID)), &o); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(o.Phase, "receiving") {
			break
		}
		if o.State != "running" || time.Now().After(deadline) {
			t.Fatalf("the promote to kill is %+v", o)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // well into the stream
	w.killDaemon(false)
	var o struct {
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(w.ok("op", "status", "--json", opID)), &o); err != nil || o.State != "failed" {
		t.Errorf("the interrupted promote's operation: %+v %v", o, err)
	}
	if r := w.banger("image", "show", "half"); r.code == 0 {
		t.Error("an interrupted promote left an image")
	}
	if left, _ := filepath.Glob(filepath.Join(w.stateDir, "images", ".*")); len(left) != 0 {
		t.Errorf("an interrupted promote left work behind: %v", left)
	}
	if _, err := os.Stat(filepath.Join(w.stateDir, "vms", w.show("src").ID, "maintenance.img")); err == nil {
		t.Error("an interrupted promote left its config disk")
	}
	w.invariants("after a promote was killed")
	if v := w.show("src"); v.State != "stopped" {
		t.Errorf("vm src after the interrupted promote: %s", v.State)
	}
	w.ok("vm", "start", "src")
	if out := w.ok("vm", "ssh", "src", "--", "cat", "/etc/motd", "/work/data"); out != "promoted\nmine\n" {
		t.Errorf("vm src after the interrupted promote: %q", out)
	}
}
