package agent

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/banger-dev/banger/internal/guest"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ext4Head makes the first 4 KiB of an ext4 filesystem labelled label.
func ext4Head(label string) []byte {
	b := make([]byte, 4096)
	binary.LittleEndian.PutUint16(b[ext4MagicOffset:], ext4Magic)
	copy(b[ext4LabelOffset:ext4LabelOffset+16], label)
	return b
}

func TestExt4LabelFromMkfs(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("mkfs.ext4 not installed; the synthetic superblock tests still run")
	}
	img := filepath.Join(t.TempDir(), "upper.img")
	if out, err := exec.Command(mkfs, "-q", "-F", "-L", guest.LabelUpper, img, "4M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	kind, _, err := probeDisk(img)
	if err != nil || kind != guest.LabelUpper {
		t.Fatalf("probeDisk = %q, %v; want %q", kind, err, guest.LabelUpper)
	}
}

func TestExt4Label(t *testing.T) {
	if l, ok := ext4Label(ext4Head("banger-work")); !ok || l != "banger-work" {
		t.Errorf("got %q, %v", l, ok)
	}
	if l, ok := ext4Label(ext4Head("sixteen-chars-xx")); !ok || l != "sixteen-chars-xx" {
		t.Errorf("16-byte label: got %q, %v", l, ok)
	}
	if _, ok := ext4Label(make([]byte, 4096)); ok {
		t.Error("zeros read as ext4")
	}
	if _, ok := ext4Label([]byte("short")); ok {
		t.Error("a short read read as ext4")
	}
}

// fakeDisks makes a /sys/block and a /dev holding the named disks.
func fakeDisks(t *testing.T, disks map[string][]byte) (sysBlock, devDir string) {
	t.Helper()
	root := t.TempDir()
	sysBlock, devDir = filepath.Join(root, "sys/block"), filepath.Join(root, "dev")
	for _, d := range []string{sysBlock, devDir, filepath.Join(sysBlock, "loop0")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range disks {
		if err := os.MkdirAll(filepath.Join(sysBlock, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(devDir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return sysBlock, devDir
}

var testConfig = guest.Config{
	Hostname: "dev", Address: "172.16.0.2/24", Gateway: "172.16.0.1", DNS: []string{"172.16.0.1"},
	SearchDomain: "vm", MAC: "02:fc:00:00:00:02", AuthorizedKeys: []string{"ssh-ed25519 AAAAuser user@host"},
	HostKey:    "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----",
	HostKeyPub: "ssh-ed25519 AAAAhost root@dev",
	Hosts:      map[string]string{"web.vm": "172.16.0.3", "api.vm": "172.16.0.4"},
}

func TestClassifyDisks(t *testing.T) {
	cfgDisk, err := guest.EncodeDisk(testConfig)
	if err != nil {
		t.Fatal(err)
	}
	// Order deliberately unlike any VMM's: classification is by content.
	sysBlock, devDir := fakeDisks(t, map[string][]byte{
		"vda": ext4Head(guest.LabelWork),
		"vdb": cfgDisk,
		"vdc": ext4Head("rootfs"),
		"vdd": ext4Head(guest.LabelUpper),
	})
	d, cfg, err := classifyDisks(sysBlock, devDir)
	if err != nil {
		t.Fatal(err)
	}
	want := disks{config: devDir + "/vdb", upper: devDir + "/vdd", work: devDir + "/vda", base: devDir + "/vdc"}
	if d != want {
		t.Errorf("disks = %+v, want %+v", d, want)
	}
	if cfg.Hostname != "dev" || cfg.Hosts["web.vm"] != "172.16.0.3" {
		t.Errorf("config = %+v", cfg)
	}

	// No work disk is fine; the base may be unlabelled or not ext4.
	sysBlock, devDir = fakeDisks(t, map[string][]byte{"vda": make([]byte, 8192), "vdb": ext4Head(guest.LabelUpper), "vdc": cfgDisk})
	if d, _, err := classifyDisks(sysBlock, devDir); err != nil || d.work != "" || d.base != devDir+"/vda" {
		t.Errorf("without work disk: %+v, %v", d, err)
	}
}

func TestClassifyDisksErrors(t *testing.T) {
	cfgDisk, _ := guest.EncodeDisk(testConfig)
	for _, tc := range []struct {
		name  string
		disks map[string][]byte
		want  string
	}{
		{"two bases", map[string][]byte{"vda": ext4Head("a"), "vdb": ext4Head("b"), "vdc": cfgDisk, "vdd": ext4Head(guest.LabelUpper)}, "more than one disk could be the base"},
		{"no upper", map[string][]byte{"vda": ext4Head("rootfs"), "vdb": cfgDisk}, "missing the disk labelled banger-upper (disks seen: vda vdb)"},
		{"nothing", nil, "missing the config disk, the disk labelled banger-upper, the base image disk (disks seen: none)"},
		{"two uppers", map[string][]byte{"vda": ext4Head(guest.LabelUpper), "vdb": ext4Head(guest.LabelUpper)}, "two banger-upper disks"},
		{"bad config", map[string][]byte{"vda": []byte(guest.ConfigMagic + "{not json")}, "config disk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sysBlock, devDir := fakeDisks(t, tc.disks)
			_, _, err := waitDisks(sysBlock, devDir, 100*time.Millisecond)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestRenderHostsAndResolv(t *testing.T) {
	wantHosts := "# written by banger-agent at every boot\n" +
		"127.0.0.1\tlocalhost\n127.0.1.1\tdev\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"172.16.0.4\tapi.vm\n172.16.0.3\tweb.vm\n"
	if got := renderHosts(testConfig); got != wantHosts {
		t.Errorf("hosts:\n%s\nwant:\n%s", got, wantHosts)
	}
	wantResolv := "# written by banger-agent at every boot\nnameserver 172.16.0.1\nsearch vm\n"
	if got := renderResolv(testConfig); got != wantResolv {
		t.Errorf("resolv.conf:\n%s\nwant:\n%s", got, wantResolv)
	}
}

func TestCheckConfig(t *testing.T) {
	if err := checkConfig(testConfig); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*guest.Config){
		"hostname with newline": func(c *guest.Config) { c.Hostname = "a\n1.2.3.4 evil" },
		"empty hostname":        func(c *guest.Config) { c.Hostname = "" },
		"bad DNS":               func(c *guest.Config) { c.DNS = []string{"1.2.3.4\nnameserver 6.6.6.6"} },
		"bad hosts IP":          func(c *guest.Config) { c.Hosts = map[string]string{"a": "not-ip"} },
		"multi-line key":        func(c *guest.Config) { c.AuthorizedKeys = []string{"ssh-ed25519 A\nssh-rsa B"} },
		"no host key":           func(c *guest.Config) { c.HostKey = "" },
	} {
		c := testConfig
		mutate(&c)
		if err := checkConfig(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestWriteGuestFiles(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "stub-resolv.conf")
	must(t, os.WriteFile(outside, []byte("outside\n"), 0o644))
	for _, d := range []string{"etc/ssh/sshd_config.d", "root"} {
		must(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	for _, f := range []string{"ssh_host_rsa_key", "ssh_host_rsa_key.pub", "ssh_host_ecdsa_key", "ssh_host_ecdsa_key.pub", "ssh_host_ed25519_key", "sshd_config"} {
		must(t, os.WriteFile(filepath.Join(dir, "etc/ssh", f), []byte("old"), 0o644))
	}
	// resolv.conf is often an absolute symlink; it must be replaced, and
	// nothing written where it points.
	if err := os.Symlink(outside, filepath.Join(dir, "etc/resolv.conf")); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := writeGuestFiles(root, testConfig); err != nil {
		t.Fatal(err)
	}
	if err := writeGuestFiles(root, testConfig); err != nil {
		t.Fatalf("second boot: %v", err)
	}

	check := func(name, want string, perm os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, name)
		st, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		if !st.Mode().IsRegular() || st.Mode().Perm() != perm {
			t.Errorf("%s: mode %v, want regular %v", name, st.Mode(), perm)
		}
		if got, _ := os.ReadFile(p); string(got) != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	check("etc/hostname", "dev\n", 0o644)
	check("etc/hosts", renderHosts(testConfig), 0o644)
	check("etc/resolv.conf", renderResolv(testConfig), 0o644)
	check("root/.ssh/authorized_keys", "ssh-ed25519 AAAAuser user@host\n", 0o600)
	check("etc/ssh/ssh_host_ed25519_key", testConfig.HostKey+"\n", 0o600)
	check("etc/ssh/ssh_host_ed25519_key.pub", testConfig.HostKeyPub+"\n", 0o644)
	check("etc/ssh/sshd_config.d/banger.conf", "HostKey /etc/ssh/ssh_host_ed25519_key\n", 0o644)
	check("etc/ssh/sshd_config", "old", 0o644)
	if st, _ := os.Stat(filepath.Join(dir, "root/.ssh")); st == nil || st.Mode().Perm() != 0o700 {
		t.Errorf("root/.ssh mode %v, want 0700", st)
	}
	if got, _ := os.ReadFile(outside); string(got) != "outside\n" {
		t.Errorf("write went through the resolv.conf symlink: %q", got)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "etc/ssh"))
	for _, e := range entries {
		if strings.Contains(e.Name(), "rsa") || strings.Contains(e.Name(), "ecdsa") {
			t.Errorf("%s not removed", e.Name())
		}
	}
}

func TestPickLink(t *testing.T) {
	mac, _ := net.ParseMAC("02:fc:00:00:00:02")
	other, _ := net.ParseMAC("02:fc:00:00:00:09")
	lo := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "lo"}}
	eth0 := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", HardwareAddr: other}}
	eth1 := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth1", HardwareAddr: mac}}
	if l, err := pickLink([]netlink.Link{lo, eth0, eth1}, "02:FC:00:00:00:02"); err != nil || l != eth1 {
		t.Errorf("by MAC: %v, %v", l, err)
	}
	if l, err := pickLink([]netlink.Link{lo, eth0}, "02:fc:00:00:00:02"); err != nil || l != eth0 {
		t.Errorf("fallback: %v, %v", l, err)
	}
	if _, err := pickLink([]netlink.Link{lo}, "02:fc:00:00:00:02"); err == nil {
		t.Error("no interface: no error")
	}
}

func TestFindPortAndVsock(t *testing.T) {
	dir := t.TempDir()
	for port, name := range map[string]string{"vport0p1": "org.qemu.guest_agent.0\n", "vport0p2": guest.PortName + "\n", "vport1p1": ""} {
		must(t, os.MkdirAll(filepath.Join(dir, "virtio-ports", port), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "virtio-ports", port, "name"), []byte(name), 0o444))
	}
	if got := findPort(filepath.Join(dir, "virtio-ports"), guest.PortName); got != "/dev/vport0p2" {
		t.Errorf("findPort = %q", got)
	}
	if got := findPort(filepath.Join(dir, "virtio-ports"), "nope"); got != "" {
		t.Errorf("findPort(nope) = %q", got)
	}
	drivers := filepath.Join(dir, "drivers")
	must(t, os.MkdirAll(filepath.Join(drivers, "vmw_vsock_virtio_transport"), 0o755))
	if hasVsock(drivers) {
		t.Error("vsock without a device")
	}
	must(t, os.MkdirAll(filepath.Join(drivers, "vmw_vsock_virtio_transport", "virtio3"), 0o755))
	if !hasVsock(drivers) {
		t.Error("vsock device not seen")
	}
}

func TestFindInit(t *testing.T) {
	root := t.TempDir()
	if got := findInit(root); got != "" {
		t.Errorf("empty root: %q", got)
	}
	must(t, os.MkdirAll(filepath.Join(root, "lib/systemd"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "lib/systemd/systemd"), nil, 0o755))
	if got := findInit(root); got != "/lib/systemd/systemd" {
		t.Errorf("got %q", got)
	}
	must(t, os.MkdirAll(filepath.Join(root, "sbin"), 0o755))
	must(t, os.Symlink("/nonexistent", filepath.Join(root, "sbin/init"))) // dangling: skipped
	if got := findInit(root); got != "/lib/systemd/systemd" {
		t.Errorf("dangling /sbin/init: got %q", got)
	}
	must(t, os.Remove(filepath.Join(root, "sbin/init")))
	must(t, os.WriteFile(filepath.Join(root, "sbin/init"), nil, 0o755))
	if got := findInit(root); got != "/sbin/init" {
		t.Errorf("got %q", got)
	}
}

func TestCompressedModule(t *testing.T) {
	for p, want := range map[string]bool{"/lib/modules/a.ko": false, "/lib/modules/a.ko.xz": true, "/lib/modules/a.ko.zst": true} {
		if compressed(p) != want {
			t.Errorf("compressed(%q) = %v", p, !want)
		}
	}
}

// host is the test's side of a control channel.
type host struct {
	t    *testing.T
	conn net.Conn
	dec  *json.Decoder
}

func (h *host) send(line string) {
	h.t.Helper()
	if _, err := io.WriteString(h.conn, line+"\n"); err != nil {
		h.t.Fatal(err)
	}
}

// next returns the next message that is not a heartbeat.
func (h *host) next() guest.Message {
	h.t.Helper()
	for {
		var m guest.Message
		_ = h.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := h.dec.Decode(&m); err != nil {
			h.t.Fatalf("reading from the agent: %v", err)
		}
		if m.Type != guest.MsgHeartbeat {
			return m
		}
	}
}

func TestServe(t *testing.T) {
	agentSide, hostSide := net.Pipe()
	shutdowns := make(chan struct{}, 1)
	var adjusted []time.Duration
	var identities []guest.Identity
	s := &server{
		identify: func(id guest.Identity) error {
			if id.MachineID == "" {
				return errors.New("no entropy")
			}
			identities = append(identities, id)
			return nil
		},
		log: newLogger(io.Discard), version: "v1.2.3", heartbeat: 10 * time.Millisecond,
		shutdown: func() { shutdowns <- struct{}{} },
		adjustClock: func(d time.Duration) (string, error) {
			adjusted = append(adjusted, d)
			if d > time.Hour {
				return "", errors.New("EPERM")
			}
			return guest.ClockSlewed, nil
		},
	}
	done := make(chan error, 1)
	go func() { done <- s.run(context.Background(), agentSide) }()
	h := &host{t: t, conn: hostSide, dec: json.NewDecoder(hostSide)}

	if m := h.next(); m != (guest.Message{Type: guest.MsgReady, Detail: "v1.2.3"}) {
		t.Fatalf("first message %+v, want ready with the version", m)
	}
	var hb guest.Message
	_ = h.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := h.dec.Decode(&hb); err != nil || hb.Type != guest.MsgHeartbeat {
		t.Fatalf("second message %+v, %v; want a heartbeat", hb, err)
	}
	h.send(`this is not json`)
	h.send(`{"type":"bogus"}`)
	h.send(`{"type":"ping"}`)
	if m := h.next(); m.Type != guest.MsgPong {
		t.Fatalf("answer to ping: %+v", m)
	}
	before := time.Now()
	h.send(`{"type":"clock-query","id":"q1"}`)
	if m := h.next(); m.Type != guest.MsgClock || m.ID != "q1" || m.Time < before.UnixNano() || m.Time > time.Now().UnixNano() {
		t.Fatalf("answer to a clock query: %+v (asked at %d)", m, before.UnixNano())
	}
	h.send(`{"type":"clock-adjust","id":"q1","offset":-2500000}`)
	if m := h.next(); m != (guest.Message{Type: guest.MsgClockDone, ID: "q1", Detail: guest.ClockSlewed}) {
		t.Fatalf("answer to a clock adjustment: %+v", m)
	}
	h.send(`{"type":"clock-adjust","id":"q2","offset":7200000000000}`)
	if m := h.next(); m.Type != guest.MsgClockDone || m.ID != "q2" || m.Detail != "EPERM" {
		t.Fatalf("answer to a clock adjustment that failed: %+v", m)
	}
	if len(adjusted) != 2 || adjusted[0] != -2500*time.Microsecond {
		t.Fatalf("clock adjusted by %v, want -2.5ms then 2h", adjusted)
	}
	h.send(`{"type":"identity","id":"i1"}`)
	if m := h.next(); m.Type != guest.MsgIdentityDone || m.ID != "i1" || m.Detail == "" {
		t.Fatalf("answer to an identity message without one: %+v", m)
	}
	h.send(`{"type":"identity","id":"i2","identity":{"config":{"hostname":"fork-1"},"machine_id":"m"}}`)
	if m := h.next(); m != (guest.Message{Type: guest.MsgIdentityDone, ID: "i2"}) || len(identities) != 1 || identities[0].Config.Hostname != "fork-1" {
		t.Fatalf("answer to an identity: %+v (applied %+v)", m, identities)
	}
	h.send(`{"type":"identity","id":"i3","identity":{"config":{"hostname":"bad"}}}`)
	if m := h.next(); m.Type != guest.MsgIdentityDone || m.ID != "i3" || m.Detail != "no entropy" {
		t.Fatalf("answer to an identity that failed: %+v", m)
	}
	h.send(`{"type":"shutdown"}`)
	if m := h.next(); m.Type != guest.MsgAck {
		t.Fatalf("answer to shutdown: %+v", m)
	}
	select {
	case <-shutdowns:
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown not called after the ack")
	}
	hostSide.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after the host left: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return when the host closed the stream")
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	agentSide, hostSide := net.Pipe()
	defer hostSide.Close()
	go func() { _, _ = io.Copy(io.Discard, hostSide) }()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{log: newLogger(io.Discard), heartbeat: time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- s.run(ctx, agentSide) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return on cancel")
	}
}

// portLike is a virtio-serial port as the agent sees it: reads return EOF
// while the host side is closed, then the host's lines.
type portLike struct {
	mu     sync.Mutex
	reads  []string // "" is an EOF
	writes strings.Builder
	wrote  chan struct{} // closed once both ready and pong are written
	closed bool
}

func (p *portLike) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.reads) == 0 {
		return 0, io.EOF
	}
	r := p.reads[0]
	p.reads = p.reads[1:]
	if r == "" {
		return 0, io.EOF
	}
	return copy(b, r), nil
}

func (p *portLike) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writes.Write(b)
	w := p.writes.String()
	if strings.Contains(w, guest.MsgPong) && strings.Contains(w, guest.MsgReady) && !p.closed {
		p.closed = true
		close(p.wrote)
	}
	return len(b), nil
}

func TestServeRetriesEOFOnPorts(t *testing.T) {
	p := &portLike{reads: []string{"", "", `{"type":`, "", `"ping"}` + "\n"}, wrote: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &server{log: newLogger(io.Discard), heartbeat: time.Hour, eofRetry: time.Millisecond}
	go func() { _ = s.run(ctx, p) }()
	select {
	case <-p.wrote:
	case <-time.After(5 * time.Second):
		t.Fatal("no pong: EOFs ended the session or lost the partial line")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	sc := bufio.NewScanner(strings.NewReader(p.writes.String()))
	var types []string
	for sc.Scan() {
		var m guest.Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Errorf("agent wrote %q: %v", sc.Bytes(), err)
		}
		types = append(types, m.Type)
	}
	if len(types) != 2 {
		t.Errorf("agent wrote %v, want ready and pong", types)
	}
}

// The listening sshd is the one whose parent is not an sshd: it alone
// gets the SIGHUP that makes it read the new host key.
func TestSSHDListenersAndMachineID(t *testing.T) {
	dir := t.TempDir()
	for pid, stat := range map[string]string{
		"1":   "1 (systemd) S 0 1 1",
		"200": "200 (sshd) S 1 200 200",
		"300": "300 (sshd) S 200 300 300", // a session
		"400": "400 (my (sshd)) S 1 400 400",
		"500": "500 (bash) S 300 500 500",
		"600": "600 (sshd) S 1 600 600", // sshd -i from a systemd socket
	} {
		if err := os.MkdirAll(filepath.Join(dir, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, pid, "stat"), []byte(stat+" 0 0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for pid, argv := range map[string]string{"200": "/usr/sbin/sshd\x00-D\x00", "600": "sshd: root [priv]\x00-i\x00"} {
		if err := os.WriteFile(filepath.Join(dir, pid, "cmdline"), []byte(argv), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := sshdListeners(dir); len(got) != 1 || got[0] != 200 {
		t.Errorf("sshd listeners %v, want [200]", got)
	}
	for id, ok := range map[string]bool{strings.Repeat("a1", 16): true, strings.Repeat("A1", 16): false, "abc": false, strings.Repeat("g", 32): false} {
		if validMachineID(id) != ok {
			t.Errorf("validMachineID(%q) = %v", id, !ok)
		}
	}
}
