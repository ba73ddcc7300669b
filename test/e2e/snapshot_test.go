package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A snapshot of a running VM and a restore of it: a file written after
// the snapshot is back to its earlier state, a file made after it is
// gone, a process started before it runs, and the clock is the host's.
// Snapshots that no longer match the VM are refused, and they go with
// their VM.
func TestSnapshotRestore(t *testing.T) {
	w := newWorld(t)
	w.ok("vm", "create", "s")
	w.ok("vm", "ssh", "s", "--", "sh", "-c", "echo before > /root/f; echo work-before > /work/w; setsid sleep 4242 </dev/null >/dev/null 2>&1 & sync")
	w.ok("vm", "snapshot", "s", "--name", "one")
	if r := w.banger("vm", "snapshot", "s", "--name", "one"); r.code == 0 || !strings.Contains(r.stderr, "already") {
		t.Errorf("a second snapshot of one name: exit %d, %q", r.code, r.stderr)
	}
	var sns []struct {
		Name      string `json:"name"`
		SizeBytes int64  `json:"size_bytes"`
		Version   string `json:"version"`
	}
	if err := json.Unmarshal([]byte(w.ok("vm", "snapshot", "list", "--json", "s")), &sns); err != nil || len(sns) != 1 || sns[0].Name != "one" || sns[0].SizeBytes == 0 || sns[0].Version == "" {
		t.Fatalf("vm snapshot list: %+v %v", sns, err)
	}
	// The VM ran on after its snapshot.
	w.ok("vm", "ssh", "s", "--", "sh", "-c", "echo after > /root/f; echo work-after > /work/w; touch /root/g; pkill -f 'slee[p] 4242'; true")
	time.Sleep(3 * time.Second) // the restored clock must catch up by more than this

	w.ok("vm", "restore", "s", "one")
	check := "cat /root/f /work/w; test -e /root/g && echo g-exists; pgrep -f 'slee[p] 4242' >/dev/null && echo sleeping; date +%s.%N"
	out := w.ok("vm", "ssh", "s", "--", "sh", "-c", check)
	host := float64(time.Now().UnixNano()) / 1e9
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || strings.Join(lines[:3], "\n") != "before\nwork-before\nsleeping" {
		t.Fatalf("after the restore:\n%s", out)
	}
	if guest, err := strconv.ParseFloat(lines[3], 64); err != nil || guest < host-2 || guest > host+2 {
		t.Errorf("the restored guest's clock %s is not within 2 s of the host's %.3f", lines[3], host)
	}
	if v := w.show("s"); v.State != "running" {
		t.Errorf("after the restore the vm is %s", v.State)
	}

	// A stopped VM takes no snapshot; one changed by vm set restores none.
	w.ok("vm", "stop", "s")
	if r := w.banger("vm", "snapshot", "s"); r.code == 0 || !strings.Contains(r.stderr, "running vm") {
		t.Errorf("a snapshot of a stopped vm: exit %d, %q", r.code, r.stderr)
	}
	w.ok("vm", "set", "s", "--vcpus", "1")
	if r := w.banger("vm", "restore", "s", "one"); r.code == 0 || !strings.Contains(r.stderr, "changed the vm to 1") {
		t.Errorf("a restore after vm set: exit %d, %q", r.code, r.stderr)
	}
	if v := w.show("s"); v.State != "stopped" {
		t.Errorf("a refused restore left the vm %s", v.State)
	}
	w.ok("vm", "set", "s", "--vcpus", "2")
	// From stopped, straight back to the snapshot.
	w.ok("vm", "restore", "s", "one")
	if out := w.ok("vm", "ssh", "s", "--", "cat", "/root/f"); out != "before\n" {
		t.Errorf("a restore of a stopped vm: %q", out)
	}
	w.ok("vm", "snapshot", "delete", "s", "one")
	if r := w.banger("vm", "restore", "s", "one"); r.code == 0 || !strings.Contains(r.stderr, "no snapshot") {
		t.Errorf("a restore of a deleted snapshot: exit %d, %q", r.code, r.stderr)
	}
	w.ok("vm", "snapshot", "s", "--name", "two")
	dir := filepath.Join(w.stateDir, "vms", w.show("s").ID)
	w.ok("vm", "delete", "--force", "s")
	if _, err := os.Stat(dir); err == nil {
		t.Error("the vm's snapshots outlived it")
	}
	w.invariants("after snapshots")
}

// A snapshot of a VM under load (a writer appending numbered records to
// /work, fsyncing now and then, beside a CPU burner) restores to a guest
// whose memory and disks match: the records run on without a gap or a
// torn line, the writer and the burner still run, a file written after
// the snapshot is gone, and the kernel logged no ext4 error.
func TestSnapshotUnderLoad(t *testing.T) {
	w := newWorld(t)
	w.ok("vm", "create", "busy")
	writer := `i=0; while :; do i=$((i+1)); echo "$i $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" >> /work/log; [ $((i % 10)) = 0 ] && sync; done`
	w.ok("vm", "ssh", "busy", "--", "sh", "-c",
		"setsid sh -c '"+strings.ReplaceAll(writer, "'", `'\''`)+"' </dev/null >/dev/null 2>&1 & setsid sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 & true")
	count := func() int {
		t.Helper()
		n, err := strconv.Atoi(strings.TrimSpace(w.ok("vm", "ssh", "busy", "--", "sh", "-c", "wc -l < /work/log")))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, "the writer to write", func() bool { return count() > 20 })
	w.ok("vm", "snapshot", "busy", "--name", "loaded")
	at := count()
	w.ok("vm", "ssh", "busy", "--", "touch", "/work/after")
	waitFor(t, "the writer to go on", func() bool { return count() > at+20 })

	w.ok("vm", "restore", "busy", "loaded")
	check := `test -e /work/after && echo after-exists
awk '$1 != NR || length($2) != 32 { bad = NR } END { print (bad ? "gap or torn line at " bad : "records ok"), NR }' /work/log
pgrep -f 'ech[o] "\$i' >/dev/null && echo writer-runs
pgrep -f 'whil[e] :; do :' >/dev/null && echo burner-runs
dmesg | grep -c 'EXT4-fs error' || true`
	out := w.ok("vm", "ssh", "busy", "--", "sh", "-c", check)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "records ok ") || lines[1] != "writer-runs" || lines[2] != "burner-runs" || lines[3] != "0" {
		t.Fatalf("after restoring a snapshot taken under load:\n%s", out)
	}
	t.Logf("records: %d at the snapshot, %s after the restore", at, strings.TrimPrefix(lines[0], "records ok "))
	w.invariants("after a restore under load")
}
