package hostnet

// These tests change real host networking, so they never run in the
// host's own network namespace: the parent test creates namespaces of its
// own and re-executes the test binary inside one of them, where the child
// does the real work. All traffic stays between namespaces the test made.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	envChild      = "BANGER_HOSTNET_TEST_CHILD"    // "1" in the re-executed child
	envParentNS   = "BANGER_HOSTNET_TEST_PARENTNS" // the parent's netns, which the child must not be in
	envGuestNS    = "BANGER_HOSTNET_TEST_GUESTNS"
	envUpstreamNS = "BANGER_HOSTNET_TEST_UPSTREAMNS"
)

// requireRoot skips (or, in CI, fails) when the test cannot create network
// namespaces.
func requireRoot(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root to create a network namespace"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs the ip command (iproute2) to create a network namespace"
	} else if _, err := exec.LookPath("nft"); err != nil {
		why = "needs the nft command to inspect nftables"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true, so this is a failure, not a skip)", why)
	}
	t.Skipf("skipping: %s; run as root to exercise bridge, taps and nftables inside a throw-away netns", why)
}

// inNetns runs the test named name again, in a fresh network namespace,
// with two more namespaces (a "guest" and an "upstream") for traffic
// checks. It returns true in the child, where the caller does the work.
func inNetns(t *testing.T, name string) bool {
	t.Helper()
	if os.Getenv(envChild) == "1" {
		self, err := os.Readlink("/proc/self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		if parent := os.Getenv(envParentNS); parent == "" || self == parent {
			t.Fatalf("refusing to run: child is in the parent's network namespace (%s)", self)
		}
		return true
	}
	requireRoot(t)
	parentNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable() // resolve now: /proc/self/exe would be ip itself after ip execs it
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	base := "bgtest-" + hex.EncodeToString(b)
	host, guest, upstream := base, base+"-g", base+"-u"
	for _, ns := range []string{host, guest, upstream} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", host, exe,
		"-test.run", "^"+name+"$", "-test.v", "-test.count=1", "-test.timeout=170s")
	cmd.Env = append(os.Environ(), envChild+"=1", envParentNS+"="+parentNS, envGuestNS+"="+guest, envUpstreamNS+"="+upstream)
	out, err := cmd.CombinedOutput()
	t.Logf("child in netns %s:\n%s", host, out)
	if err != nil {
		t.Fatalf("child test failed: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: "+name) {
		t.Fatalf("child did not report a pass for %s", name)
	}
	return false
}

// sh runs argv (in the child's namespace) and returns its output.
func sh(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func shFails(argv ...string) bool {
	return exec.Command(argv[0], argv[1:]...).Run() != nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func inventory(t *testing.T, m *Manager) Inventory {
	t.Helper()
	inv, err := m.Inventory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

// hostState is what Ensure controls, as the system tools print it. Rule
// handles are included: a rebuilt table would get new ones.
func hostState(t *testing.T) string {
	t.Helper()
	return sh(t, "ip", "-o", "addr", "show", "dev", "banger0") +
		sh(t, "nft", "-a", "list", "ruleset") +
		sh(t, "cat", "/proc/sys/net/ipv4/ip_forward")
}

func tunFlags(t *testing.T, tap string) uint64 {
	t.Helper()
	s := strings.TrimSpace(sh(t, "cat", "/sys/class/net/"+tap+"/tun_flags"))
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

const otherTable = `table inet other {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 9 counter drop
	}
}
`

func TestManagerInNetns(t *testing.T) {
	if !inNetns(t, "TestManagerInNetns") {
		return
	}
	ctx := context.Background()
	guest, upstream := os.Getenv(envGuestNS), os.Getenv(envUpstreamNS)

	// Something that is not banger's, which must survive everything.
	sh(t, "sh", "-c", "printf '%s' '"+otherTable+"' | nft -f -")
	sh(t, "ip", "link", "add", "vh0", "type", "veth", "peer", "name", "vg0", "netns", guest)
	otherBefore := sh(t, "nft", "list", "table", "inet", "other")

	m := New(Config{Subnet: netip.MustParsePrefix("172.16.0.0/24")}, nil)
	if inv := inventory(t, m); inv.Bridge != "" || len(inv.Taps) != 0 || inv.NFTable != "" {
		t.Fatalf("inventory of an empty namespace = %+v", inv)
	}
	if _, err := m.AcquireTap(ctx); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("AcquireTap before Ensure = %v, want a missing-bridge error", err)
	}

	// Ensure sets everything up.
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the pool to fill", func() bool { return len(inventory(t, m).Taps) == 2 })
	inv := inventory(t, m)
	if inv.Bridge != "banger0" || inv.NFTable != "inet banger" || !slices.Equal(inv.Taps, []string{"bgtap0", "bgtap1"}) {
		t.Fatalf("inventory after Ensure = %+v", inv)
	}
	addr := sh(t, "ip", "-o", "-4", "addr", "show", "dev", "banger0")
	if !strings.Contains(addr, "inet 172.16.0.1/24") || strings.Count(addr, "inet ") != 1 {
		t.Fatalf("bridge addresses:\n%s", addr)
	}
	if link := sh(t, "ip", "-o", "link", "show", "dev", "banger0"); !strings.Contains(link, ",UP") || !strings.Contains(link, "02:62:67:10:00:01") {
		t.Fatalf("bridge link:\n%s", link)
	}
	ruleset := sh(t, "nft", "list", "table", "inet", "banger")
	for _, want := range []string{
		"type nat hook postrouting priority srcnat; policy accept;",
		"ip saddr 172.16.0.0/24 ip daddr != 172.16.0.0/24 masquerade comment \"banger: nat\"",
		"type filter hook forward priority filter; policy accept;",
		`iifname "banger0" accept`,
		`oifname "banger0" accept`,
	} {
		if !strings.Contains(ruleset, want) {
			t.Errorf("banger's table lacks %q:\n%s", want, ruleset)
		}
	}
	if got := strings.TrimSpace(sh(t, "cat", "/proc/sys/net/ipv4/ip_forward")); got != "1" {
		t.Fatalf("ip_forward = %s", got)
	}

	// Ensure again changes nothing: same addresses, same rules, same handles.
	before := hostState(t)
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if after := hostState(t); after != before {
		t.Fatalf("second Ensure changed the host.\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// Ensure repairs drift: a foreign rule in banger's table, a lost
	// address, a downed bridge.
	sh(t, "nft", "add", "rule", "inet", "banger", "forward", "tcp", "dport", "22", "drop")
	sh(t, "ip", "addr", "flush", "dev", "banger0")
	sh(t, "ip", "addr", "add", "10.1.1.1/24", "dev", "banger0")
	sh(t, "ip", "link", "set", "banger0", "down")
	sh(t, "ip", "link", "set", "bgtap1", "nomaster")
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sh(t, "nft", "list", "table", "inet", "banger"); got != ruleset {
		t.Fatalf("Ensure did not restore the table:\n%s\nwant:\n%s", got, ruleset)
	}
	if got := sh(t, "ip", "-o", "-4", "addr", "show", "dev", "banger0"); got != addr {
		t.Fatalf("Ensure did not restore the address:\n%s\nwant:\n%s", got, addr)
	}
	if link := sh(t, "ip", "-o", "link", "show", "dev", "banger0"); !strings.Contains(link, ",UP") {
		t.Fatalf("Ensure did not bring the bridge back up:\n%s", link)
	}
	if link := sh(t, "ip", "-o", "link", "show", "dev", "bgtap1"); !strings.Contains(link, "master banger0") {
		t.Fatalf("Ensure did not reattach the tap:\n%s", link)
	}

	// NAT works, between namespaces this test made: the upstream has no
	// route back to the guest subnet, so a reply means masquerade.
	sh(t, "ip", "link", "set", "vh0", "master", "banger0", "up")
	sh(t, "ip", "-n", guest, "addr", "add", "172.16.0.2/24", "dev", "vg0")
	sh(t, "ip", "-n", guest, "link", "set", "vg0", "up")
	sh(t, "ip", "-n", guest, "route", "add", "default", "via", "172.16.0.1")
	sh(t, "ip", "link", "add", "vu0", "type", "veth", "peer", "name", "vu1", "netns", upstream)
	sh(t, "ip", "addr", "add", "10.250.0.1/24", "dev", "vu0")
	sh(t, "ip", "link", "set", "vu0", "up")
	sh(t, "ip", "-n", upstream, "addr", "add", "10.250.0.2/24", "dev", "vu1")
	sh(t, "ip", "-n", upstream, "link", "set", "vu1", "up")
	ping := []string{"ip", "netns", "exec", guest, "ping", "-c1", "-W2"}
	sh(t, append(ping, "172.16.0.1")...)
	sh(t, append(ping, "10.250.0.2")...)
	sh(t, "nft", "delete", "table", "inet", "banger")
	if !shFails(append(ping, "10.250.0.2")...) {
		t.Fatal("the upstream answered without banger's NAT table: the NAT check proves nothing")
	}
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	sh(t, append(ping, "10.250.0.2")...)

	// Taps: more than the pool holds, concurrently.
	const n = 5
	taps := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { taps[i], errs[i] = m.AcquireTap(ctx) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
	}
	if len(slices.Compact(sortedCopy(taps))) != n {
		t.Fatalf("AcquireTap handed out duplicates: %v", taps)
	}
	for _, tap := range taps {
		link := sh(t, "ip", "-d", "-o", "link", "show", "dev", tap)
		if !strings.Contains(link, "master banger0") || !strings.Contains(link, "tun type tap") || !strings.Contains(link, ",UP") {
			t.Fatalf("tap %s is not a tap on the bridge and up:\n%s", tap, link)
		}
		if f := tunFlags(t, tap); f&(unix.IFF_TAP|unix.IFF_NO_PI) != unix.IFF_TAP|unix.IFF_NO_PI || f&unix.IFF_MULTI_QUEUE != 0 {
			t.Fatalf("tap %s has tun_flags %#x", tap, f)
		}
	}
	waitFor(t, "the pool to refill", func() bool { return len(inventory(t, m).Taps) == n+2 })

	// A VMM can open it the way QEMU and Firecracker do.
	openTap(t, taps[0])

	// Release deletes, and is idempotent; foreign names are refused.
	for _, tap := range taps {
		if err := m.ReleaseTap(ctx, tap); err != nil {
			t.Fatal(err)
		}
		if !shFails("ip", "link", "show", "dev", tap) {
			t.Fatalf("tap %s still exists after ReleaseTap", tap)
		}
	}
	if err := m.ReleaseTap(ctx, taps[0]); err != nil {
		t.Fatalf("second ReleaseTap = %v", err)
	}
	if err := m.ReleaseTap(ctx, "vh0"); err == nil {
		t.Fatal("ReleaseTap of a foreign link succeeded")
	}
	if len(inventory(t, m).Taps) != 2 {
		t.Fatalf("after release, taps = %v, want the 2 pooled", inventory(t, m).Taps)
	}

	// PruneTaps removes orphans but not pooled, handed-out or kept taps.
	held, err := m.AcquireTap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the pool to refill", func() bool { return len(inventory(t, m).Taps) == 3 })
	sh(t, "ip", "tuntap", "add", "bgtap40", "mode", "tap")
	sh(t, "ip", "tuntap", "add", "bgtap41", "mode", "tap")
	pruned, err := m.PruneTaps(ctx, []string{"bgtap41"})
	if err != nil || !slices.Equal(pruned, []string{"bgtap40"}) {
		t.Fatalf("PruneTaps = %v, %v; want [bgtap40]", pruned, err)
	}
	if got := inventory(t, m).Taps; len(got) != 4 || !slices.Contains(got, held) || !slices.Contains(got, "bgtap41") {
		t.Fatalf("after prune, taps = %v", got)
	}

	// Close drops the pool but keeps handed-out taps and the bridge.
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := inventory(t, m); got.Bridge != "banger0" || !slices.Equal(sortedCopy(got.Taps), sortedCopy([]string{held, "bgtap41"})) {
		t.Fatalf("after Close, inventory = %+v", got)
	}

	// Teardown removes everything banger added, and only that.
	if err := m.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	if inv := inventory(t, m); inv.Bridge != "" || len(inv.Taps) != 0 || inv.NFTable != "" {
		t.Fatalf("inventory after Teardown = %+v", inv)
	}
	if tables := sh(t, "nft", "list", "tables"); strings.Contains(tables, "banger") || !strings.Contains(tables, "table inet other") {
		t.Fatalf("nft tables after Teardown:\n%s", tables)
	}
	if got := sh(t, "nft", "list", "table", "inet", "other"); got != otherBefore {
		t.Fatalf("another table changed:\n%s\nwas:\n%s", got, otherBefore)
	}
	if !shFails("ip", "link", "show", "dev", "banger0") {
		t.Fatal("bridge still exists after Teardown")
	}
	sh(t, "ip", "link", "show", "dev", "vh0") // not banger's: stays
	if err := m.Teardown(ctx); err != nil {
		t.Fatalf("second Teardown = %v", err)
	}

	// And it all comes back.
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the pool to fill after a new Ensure", func() bool { return len(inventory(t, m).Taps) == 2 })
	if err := m.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	if inv := inventory(t, m); inv.Bridge != "" || len(inv.Taps) != 0 || inv.NFTable != "" {
		t.Fatalf("inventory after the last Teardown = %+v", inv)
	}
}

func TestEnsureRefusesForeignLinkInNetns(t *testing.T) {
	if !inNetns(t, "TestEnsureRefusesForeignLinkInNetns") {
		return
	}
	sh(t, "ip", "link", "add", "banger0", "type", "veth", "peer", "name", "bgpeer0")
	m := New(Config{}, nil)
	err := m.Ensure(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not a bridge") {
		t.Fatalf("Ensure with a veth named banger0 = %v", err)
	}
	if err := m.Teardown(context.Background()); err == nil {
		t.Fatal("Teardown deleted or ignored a foreign link named like the bridge without saying so")
	}
	sh(t, "ip", "link", "show", "dev", "banger0") // still there
}

// openTap attaches to the persistent tap as a VMM does, and checks the
// tap then has carrier.
func openTap(t *testing.T, name string) {
	t.Helper()
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		t.Fatal(err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		t.Fatalf("TUNSETIFF %s: %v", name, err)
	}
	if c := strings.TrimSpace(sh(t, "cat", "/sys/class/net/"+name+"/carrier")); c != "1" {
		t.Fatalf("tap %s opened but carrier = %s", name, c)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// With IsolateVMs a frame one tap sends reaches the host but not another
// tap, and the forward chain drops guest-to-guest routing; Ensure without
// it lifts both, on the same taps.
func TestIsolateVMsInNetns(t *testing.T) {
	if !inNetns(t, "TestIsolateVMsInNetns") {
		return
	}
	ctx := context.Background()
	m := New(Config{IsolateVMs: true, PoolSize: -1}, nil)
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Teardown(ctx) }()
	a, err := m.AcquireTap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.AcquireTap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fa, fb := attachTap(t, a), attachTap(t, b)
	if !strings.Contains(sh(t, "nft", "list", "table", "inet", "banger"), "no vm to vm") {
		t.Fatal("isolate_vms without the forward chain's drop rule")
	}
	if frameCrosses(t, fa, fb) {
		t.Fatalf("a frame from %s reached %s with IsolateVMs", a, b)
	}

	open := New(Config{PoolSize: -1}, nil)
	if err := open.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sh(t, "nft", "list", "table", "inet", "banger"), "no vm to vm") {
		t.Fatal("the drop rule stayed after Ensure without isolate_vms")
	}
	if !frameCrosses(t, fa, fb) {
		t.Fatalf("a frame from %s did not reach %s without IsolateVMs", a, b)
	}
}

// attachTap opens a persistent tap for raw frames, as a VMM would.
func attachTap(t *testing.T, name string) int {
	t.Helper()
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		t.Fatal(err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		t.Fatalf("TUNSETIFF %s: %v", name, err)
	}
	return fd
}

// frameCrosses sends a broadcast frame of a local experimental ethertype
// into tap from, and reports whether tap to hands it out within a second.
// The bridge's receive counter shows the frame was sent at all.
func frameCrosses(t *testing.T, from, to int) bool {
	t.Helper()
	rx := func() int {
		n, _ := strconv.Atoi(strings.TrimSpace(sh(t, "cat", "/sys/class/net/"+DefaultBridge+"/statistics/rx_packets")))
		return n
	}
	before := rx()
	marker := make([]byte, 8)
	_, _ = rand.Read(marker)
	frame := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x0a, 0x88, 0xb5}, marker...)
	frame = append(frame, make([]byte, 60-len(frame))...)
	if _, err := unix.Write(from, frame); err != nil {
		t.Fatal(err)
	}
	crossed := readFrames(to, time.Second, func(f []byte) bool {
		return len(f) >= 22 && string(f[14:22]) == string(marker)
	})
	waitFor(t, "the bridge to receive the frame", func() bool { return rx() > before })
	return crossed
}

// readFrames hands each frame a tap (opened non-blocking) gives out to
// found until it says so or within is up, and says whether it did.
func readFrames(fd int, within time.Duration, found func([]byte) bool) bool {
	buf := make([]byte, 2048)
	for deadline := time.Now().Add(within); time.Now().Before(deadline); {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, 100); n == 0 {
			continue
		}
		for {
			n, err := unix.Read(fd, buf)
			if err != nil {
				break
			}
			if found(buf[:n]) {
				return true
			}
		}
	}
	return false
}
