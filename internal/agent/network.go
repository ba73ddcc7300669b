package agent

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
)

// linkWait is how long configureNetwork waits for the VM's interface.
const linkWait = 5 * time.Second

// configureNetwork brings lo up and gives the interface with the VM's MAC
// (else eth0) its address and default route. The configuration survives
// the switch to the image's init.
func (b *boot) configureNetwork() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	if b.cfg.Address == "" {
		b.log.Printf("no address in the config: leaving the network down")
		return nil
	}
	addr, err := netlink.ParseAddr(b.cfg.Address)
	if err != nil {
		return fmt.Errorf("config address: %w", err)
	}
	var link netlink.Link
	deadline := time.Now().Add(linkWait)
	for {
		links, err := netlink.LinkList()
		if err != nil {
			return fmt.Errorf("listing network interfaces: %w", err)
		}
		if link, err = pickLink(links, b.cfg.MAC); err == nil {
			break
		} else if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	name := link.Attrs().Name
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("adding %s to %s: %w", b.cfg.Address, name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing %s up: %w", name, err)
	}
	if err := defaultRoute(link, b.cfg.Gateway); err != nil {
		return err
	}
	b.log.Printf("%s: %s via %s", name, b.cfg.Address, orNone(b.cfg.Gateway))
	return nil
}

// defaultRoute routes everything off-link through gateway on link ("":
// no default route).
func defaultRoute(link netlink.Link, gateway string) error {
	if gateway == "" {
		return nil
	}
	gw := net.ParseIP(gateway)
	if gw == nil {
		return fmt.Errorf("config gateway %q is not an IP address", gateway)
	}
	if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw}); err != nil {
		return fmt.Errorf("adding the default route via %s: %w", gw, err)
	}
	return nil
}

// pickLink returns the interface whose MAC is mac, else eth0.
func pickLink(links []netlink.Link, mac string) (netlink.Link, error) {
	var eth0 netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if mac != "" && strings.EqualFold(a.HardwareAddr.String(), mac) {
			return l, nil
		}
		if a.Name == "eth0" {
			eth0 = l
		}
	}
	if eth0 != nil {
		return eth0, nil
	}
	return nil, fmt.Errorf("no network interface has MAC %s, and there is no eth0", mac)
}
