package vm

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/banger-dev/banger/internal/model"
)

// nextFreeIP returns the lowest address in subnet that is not used. The
// network address, the first host (the bridge) and the broadcast address
// are never handed out.
func nextFreeIP(subnet netip.Prefix, used []string) (netip.Addr, error) {
	taken := make(map[netip.Addr]bool, len(used))
	for _, u := range used {
		if a, err := netip.ParseAddr(u); err == nil {
			taken[a] = true
		}
	}
	base := subnet.Masked().Addr().As4()
	first := binary.BigEndian.Uint32(base[:])
	last := first | (1<<(32-subnet.Bits()) - 1)
	for n := first + 2; n < last; n++ {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], n)
		if a := netip.AddrFrom4(b); !taken[a] {
			return a, nil
		}
	}
	return netip.Addr{}, model.Errorf(model.ErrUnavailable, "subnet %s has no free guest addresses; delete a vm or configure a larger subnet", subnet)
}

// macFor derives a locally administered MAC from a guest IP, so the MAC is
// unique exactly when the IP is.
func macFor(ip netip.Addr) string {
	b := ip.As4()
	return fmt.Sprintf("02:fc:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}
