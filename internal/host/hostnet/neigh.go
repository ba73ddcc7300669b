package hostnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
)

// PinNeighbor makes the host's ARP entry for a guest's address permanent:
// ip is at mac, on the bridge. The host then never resolves a guest's
// address. That matters most when a new VM takes the address of one just
// deleted: the host's connections to the old VM (an ssh session's FIN,
// retransmitted) keep a resolution running that fails before the new
// guest answers and takes the new VM's first SYN down with it ("no route
// to host"). It also keeps a guest from answering ARP for another's
// address. Pinning replaces whatever entry ip had.
func (m *Manager) PinNeighbor(_ context.Context, ip netip.Addr, mac net.HardwareAddr) error {
	br, err := m.guestNeighborLink(ip)
	if err != nil {
		return fmt.Errorf("pinning %s at %s: %w", ip, mac, err)
	}
	n := &netlink.Neigh{LinkIndex: br.Attrs().Index, Family: netlink.FAMILY_V4,
		State: netlink.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: mac}
	if err := netlink.NeighSet(n); err != nil {
		return fmt.Errorf("pinning %s at %s: %w", ip, mac, err)
	}
	return nil
}

// UnpinNeighbor removes ip's pin if it still says mac: a VM that took the
// address since has pinned its own. No bridge, no pin: nothing to do.
func (m *Manager) UnpinNeighbor(ctx context.Context, ip netip.Addr, mac net.HardwareAddr) error {
	pins, err := m.pins(ctx)
	if err != nil {
		return fmt.Errorf("unpinning %s: %w", ip, err)
	}
	for _, n := range pins {
		if addrOf(n) == ip && n.HardwareAddr.String() == mac.String() {
			if err := netlink.NeighDel(&n); err != nil {
				return fmt.Errorf("unpinning %s: %w", ip, err)
			}
		}
	}
	return nil
}

// PruneNeighbors removes the pins of guest addresses not in keep (left by
// a daemon that died between pinning and recording a VM) and returns the
// addresses it unpinned.
func (m *Manager) PruneNeighbors(ctx context.Context, keep []netip.Addr) ([]netip.Addr, error) {
	pins, err := m.pins(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing pinned guest addresses: %w", err)
	}
	var pruned []netip.Addr
	var errs []error
	for _, n := range pins {
		ip := addrOf(n)
		if slices.Contains(keep, ip) {
			continue
		}
		if err := netlink.NeighDel(&n); err != nil {
			errs = append(errs, fmt.Errorf("unpinning %s: %w", ip, err))
			continue
		}
		pruned = append(pruned, ip)
	}
	return pruned, errors.Join(errs...)
}

// pins lists the permanent entries on the bridge for guest addresses.
func (m *Manager) pins(ctx context.Context) ([]netlink.Neigh, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	br, err := netlink.LinkByName(m.cfg.Bridge)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up bridge %s: %w", m.cfg.Bridge, err)
	}
	all, err := netlink.NeighList(br.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("listing neighbors on %s: %w", m.cfg.Bridge, err)
	}
	var out []netlink.Neigh
	for _, n := range all {
		if ip := addrOf(n); n.State&netlink.NUD_PERMANENT != 0 && m.isGuestAddr(ip) {
			out = append(out, n)
		}
	}
	return out, nil
}

// guestNeighborLink is the bridge, if ip is a guest address.
func (m *Manager) guestNeighborLink(ip netip.Addr) (netlink.Link, error) {
	if !m.isGuestAddr(ip) {
		return nil, fmt.Errorf("%s is not a guest address of subnet %s", ip, m.cfg.Subnet)
	}
	br, err := netlink.LinkByName(m.cfg.Bridge)
	if err != nil {
		return nil, fmt.Errorf("looking up bridge %s: %w", m.cfg.Bridge, err)
	}
	return br, nil
}

// isGuestAddr says whether ip is in the subnet and is not the gateway.
func (m *Manager) isGuestAddr(ip netip.Addr) bool {
	return ip.Is4() && m.cfg.Subnet.Contains(ip) && ip != m.Gateway()
}

func addrOf(n netlink.Neigh) netip.Addr {
	ip, _ := netip.AddrFromSlice(n.IP)
	return ip.Unmap()
}
