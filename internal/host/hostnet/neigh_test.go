package hostnet

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A pinned guest address is reached without ARP, even where nothing
// answers ARP for it; pins go only when they still name the VM's MAC, and
// a prune keeps exactly the addresses asked for.
func TestPinNeighborInNetns(t *testing.T) {
	if !inNetns(t, "TestPinNeighborInNetns") {
		return
	}
	ctx := context.Background()
	m := New(Config{PoolSize: -1}, nil)
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Teardown(ctx) }()
	tap, err := m.AcquireTap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fd := attachTap(t, tap)
	ip := netip.MustParseAddr("172.16.0.5")
	mac, _ := net.ParseMAC("02:fc:ac:10:00:05")
	other, _ := net.ParseMAC("02:fc:ac:10:00:99")

	for _, bad := range []string{"172.16.0.1", "10.0.0.5"} {
		if err := m.PinNeighbor(ctx, netip.MustParseAddr(bad), mac); err == nil || !strings.Contains(err.Error(), "not a guest address") {
			t.Fatalf("PinNeighbor(%s) = %v, want a not-a-guest-address error", bad, err)
		}
	}
	// A resolution nobody answers is under way, as after a VM at the
	// address was deleted; the pin replaces it.
	_ = sendUDP(t, ip)
	if err := m.PinNeighbor(ctx, ip, other); err != nil {
		t.Fatal(err)
	}
	if err := m.PinNeighbor(ctx, ip, mac); err != nil {
		t.Fatal(err)
	}
	if got := neighbor(t, ip); !strings.Contains(got, "lladdr "+mac.String()+" PERMANENT") {
		t.Fatalf("neighbor entry after pinning: %q", got)
	}
	drain(fd)
	marker := sendUDP(t, ip)
	if dst, arp := firstFrameTo(t, fd, ip, marker); arp || dst.String() != mac.String() {
		t.Fatalf("a packet to the pinned %s: ARP first = %v, sent to %v, want straight to %s", ip, arp, dst, mac)
	}

	if err := m.UnpinNeighbor(ctx, ip, other); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(neighbor(t, ip), "PERMANENT") {
		t.Fatal("UnpinNeighbor with another VM's MAC removed the pin")
	}
	if err := m.UnpinNeighbor(ctx, ip, mac); err != nil {
		t.Fatal(err)
	}
	if got := neighbor(t, ip); strings.Contains(got, "PERMANENT") {
		t.Fatalf("neighbor entry after unpinning: %q", got)
	}

	a, b := netip.MustParseAddr("172.16.0.6"), netip.MustParseAddr("172.16.0.7")
	for _, p := range []netip.Addr{a, b} {
		if err := m.PinNeighbor(ctx, p, mac); err != nil {
			t.Fatal(err)
		}
	}
	pruned, err := m.PruneNeighbors(ctx, []netip.Addr{a})
	if err != nil || !slices.Equal(pruned, []netip.Addr{b}) {
		t.Fatalf("PruneNeighbors(keep %s) = %v, %v; want %s pruned", a, pruned, err, b)
	}
	if !strings.Contains(neighbor(t, a), "PERMANENT") || strings.Contains(neighbor(t, b), "PERMANENT") {
		t.Fatalf("after the prune: %s %q, %s %q", a, neighbor(t, a), b, neighbor(t, b))
	}
}

func neighbor(t *testing.T, ip netip.Addr) string {
	t.Helper()
	return strings.TrimSpace(sh(t, "ip", "neigh", "show", ip.String(), "dev", DefaultBridge))
}

// sendUDP sends a datagram with a random marker to ip's discard port.
func sendUDP(t *testing.T, ip netip.Addr) []byte {
	t.Helper()
	c, err := net.Dial("udp4", netip.AddrPortFrom(ip, 9).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	marker := []byte(time.Now().Format(time.RFC3339Nano))
	_, _ = c.Write(marker)
	return marker
}

func drain(fd int) {
	buf := make([]byte, 2048)
	for {
		if _, err := unix.Read(fd, buf); err != nil {
			return
		}
	}
}

// firstFrameTo reads the tap until the frame carrying marker comes,
// within two seconds, and returns its destination MAC and whether an ARP
// request for ip came before it.
func firstFrameTo(t *testing.T, fd int, ip netip.Addr, marker []byte) (dst net.HardwareAddr, arp bool) {
	t.Helper()
	want := ip.As4()
	if !readFrames(fd, 2*time.Second, func(f []byte) bool {
		switch {
		case len(f) >= 42 && f[12] == 0x08 && f[13] == 0x06 && string(f[38:42]) == string(want[:]):
			arp = true
		case len(f) >= 14 && f[12] == 0x08 && f[13] == 0x00 && strings.Contains(string(f), string(marker)):
			dst = net.HardwareAddr(slices.Clone(f[:6]))
			return true
		}
		return false
	}) {
		t.Fatalf("the packet to %s never reached the tap", ip)
	}
	return dst, arp
}
