// Package hostnet owns banger's host networking: one bridge with the
// subnet's gateway address, persistent tap devices attached to it (a small
// pool of them kept ready so that a VM start does not wait for one), IPv4
// forwarding, and outbound NAT in banger's own nftables table.
//
// Everything is set declaratively and idempotently: Ensure makes the host
// match the Config and changes nothing when it already does; Teardown
// removes everything banger added; Inventory lists it. Only netlink and
// nftables are used, never ip/iptables/nft commands, and no nftables table
// other than banger's is ever touched.
//
// Lock order: Manager.setupMu (held across Ensure/Teardown, which do I/O)
// → tapPool.mu (a leaf, held for slice and map updates only).
package hostnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/banger-dev/banger/internal/model"
)

// Defaults for the zero values of Config.
const (
	DefaultBridge    = model.DefaultBridge
	DefaultTable     = "banger"
	DefaultTapPrefix = "bgtap"
	DefaultPoolSize  = 2
)

// DefaultSubnet is used when Config.Subnet is the zero Prefix.
var DefaultSubnet = model.DefaultSubnet

// ipForwardPath is the sysctl Ensure sets to 1 (per network namespace).
const ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

// ifNameMax is the longest interface name Linux accepts (IFNAMSIZ-1).
const ifNameMax = 15

// Config is the host networking banger wants.
type Config struct {
	Bridge    string       // bridge name, default "banger0"
	Subnet    netip.Prefix // guest subnet; the bridge gets its first host address (.1)
	Table     string       // nftables table name (family inet), default "banger"
	TapPrefix string       // taps are named TapPrefix+N, default "bgtap"
	PoolSize  int          // ready taps kept in the pool, default 2; negative means none
	// TapOwner, when set, owns every tap, so an unprivileged VMM (one run
	// by Firecracker's jailer) may open it. 0 keeps taps root's.
	TapOwner uint32
	// IsolateVMs keeps guests from reaching each other, as docker's
	// --icc=false does: every tap is an isolated bridge port (no frames
	// between taps), and the forward chain drops what the host would
	// route from the bridge back onto it. Guests still reach the host and,
	// through NAT, the outside.
	IsolateVMs bool
}

// Manager sets up and tears down banger's host networking. It is safe for
// concurrent use.
type Manager struct {
	cfg Config
	log *slog.Logger

	setupMu sync.Mutex // serialises Ensure, Teardown and Close
	pool    tapPool
}

// Inventory is everything banger owns on the host's network side.
type Inventory struct {
	Bridge  string   // the bridge's name, or "" if it does not exist
	Taps    []string // taps named TapPrefix+N, in numeric order
	NFTable string   // banger's nftables table ("inet banger"), or "" if absent
}

// New returns a manager for cfg, with defaults filled in. It touches
// nothing on the host; Ensure validates cfg.
func New(cfg Config, log *slog.Logger) *Manager {
	if cfg.Bridge == "" {
		cfg.Bridge = DefaultBridge
	}
	if !cfg.Subnet.IsValid() {
		cfg.Subnet = DefaultSubnet
	}
	cfg.Subnet = cfg.Subnet.Masked()
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.TapPrefix == "" {
		cfg.TapPrefix = DefaultTapPrefix
	}
	if cfg.PoolSize == 0 {
		cfg.PoolSize = DefaultPoolSize
	}
	if cfg.PoolSize < 0 {
		cfg.PoolSize = 0
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, log: log.With("component", "hostnet")}
	m.pool.size = cfg.PoolSize
	m.pool.claimed = map[string]bool{}
	return m
}

// Config returns the configuration in effect, defaults filled in.
func (m *Manager) Config() Config { return m.cfg }

// Gateway is the bridge's address: the subnet's first host address.
func (m *Manager) Gateway() netip.Addr { return model.Gateway(m.cfg.Subnet) }

// validate checks the configuration before anything touches the host.
func (m *Manager) validate() error {
	c := m.cfg
	for _, n := range []struct{ what, name string }{{"bridge", c.Bridge}, {"tap prefix", c.TapPrefix}} {
		if len(n.name) > ifNameMax || strings.ContainsAny(n.name, "/: \t\n%") {
			return fmt.Errorf("invalid %s name %q: at most %d characters, no '/', ':', '%%' or spaces", n.what, n.name, ifNameMax)
		}
	}
	if len(c.TapPrefix) > ifNameMax-2 {
		return fmt.Errorf("invalid tap prefix %q: at most %d characters, to leave room for two digits", c.TapPrefix, ifNameMax-2)
	}
	if m.isTap(c.Bridge) {
		return fmt.Errorf("invalid bridge name %q: it looks like one of banger's taps (prefix %q)", c.Bridge, c.TapPrefix)
	}
	if err := model.ValidateSubnet(c.Subnet); err != nil {
		return fmt.Errorf("invalid host network: %w", err)
	}
	if c.Table == "" || len(c.Table) > 255 || strings.ContainsAny(c.Table, " \t\n") {
		return fmt.Errorf("invalid nftables table name %q", c.Table)
	}
	return nil
}

// Ensure makes the host match the configuration: the bridge exists, is up
// and has the gateway address (and no other IPv4 address), and every
// banger tap is attached to it; IPv4
// forwarding is on; banger's nftables table holds exactly its NAT and
// forward chains. Calling it again changes nothing. It then starts filling
// the tap pool in the background.
func (m *Manager) Ensure(ctx context.Context) error {
	if err := m.validate(); err != nil {
		return err
	}
	m.setupMu.Lock()
	defer m.setupMu.Unlock()

	if err := m.ensureBridge(ctx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ensureIPForward(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := m.ensureNFT(); err != nil {
		return err
	}
	m.pool.enable()
	m.kickRefill()
	return nil
}

// bridgeMAC is a fixed, locally administered MAC for the bridge, derived
// from the gateway address. Without one, a Linux bridge takes the lowest
// MAC among its ports, so it would change as taps come and go and guests'
// ARP caches would go stale.
func (m *Manager) bridgeMAC() net.HardwareAddr {
	gw := m.Gateway().As4()
	return net.HardwareAddr{0x02, 'b', 'g', gw[1], gw[2], gw[3]}
}

func (m *Manager) ensureBridge(ctx context.Context) error {
	name := m.cfg.Bridge
	link, err := netlink.LinkByName(name)
	switch {
	case isNotFound(err):
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		attrs.HardwareAddr = m.bridgeMAC()
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return fmt.Errorf("creating bridge %s: %w", name, err)
		}
		m.log.Info("created bridge", "bridge", name)
		if link, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("looking up bridge %s: %w", name, err)
		}
	case err != nil:
		return fmt.Errorf("looking up bridge %s: %w", name, err)
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return fmt.Errorf("link %s exists and is a %s, not a bridge: remove it or choose another bridge name", name, link.Type())
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if mac := m.bridgeMAC(); link.Attrs().HardwareAddr.String() != mac.String() {
		if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
			return fmt.Errorf("setting the address of bridge %s to %s: %w", name, mac, err)
		}
	}
	if err := m.ensureGatewayAddr(link); err != nil {
		return err
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("bringing up bridge %s: %w", name, err)
		}
	}
	return m.reattachTaps(link)
}

// reattachTaps puts back on the bridge any of banger's taps that left it
// (the bridge was deleted and recreated under running VMs, say), and
// gives each the port isolation the configuration asks for.
func (m *Manager) reattachTaps(bridge netlink.Link) error {
	links, err := linkList()
	if err != nil {
		return fmt.Errorf("listing links: %w", err)
	}
	for _, l := range links {
		name := l.Attrs().Name
		if !m.isTap(name) || l.Type() != "tuntap" {
			continue
		}
		if l.Attrs().MasterIndex != bridge.Attrs().Index {
			if err := netlink.LinkSetMaster(l, bridge); err != nil {
				return fmt.Errorf("attaching tap %s to bridge %s: %w", name, m.cfg.Bridge, err)
			}
			m.log.Info("reattached tap to bridge", "tap", name, "bridge", m.cfg.Bridge)
		}
		if err := m.ensureIsolation(l); err != nil {
			return err
		}
	}
	return nil
}

// ensureIsolation makes a bridge port's isolation flag match IsolateVMs.
func (m *Manager) ensureIsolation(l netlink.Link) error {
	pi, err := netlink.LinkGetProtinfo(l)
	if err == nil && pi.Isolated == m.cfg.IsolateVMs {
		return nil
	}
	if err := netlink.LinkSetIsolated(l, m.cfg.IsolateVMs); err != nil {
		return fmt.Errorf("setting port isolation of tap %s to %v: %w", l.Attrs().Name, m.cfg.IsolateVMs, err)
	}
	return nil
}

func (m *Manager) ensureGatewayAddr(link netlink.Link) error {
	want := netip.PrefixFrom(m.Gateway(), m.cfg.Subnet.Bits())
	addrs, err := addrList(link)
	if err != nil {
		return fmt.Errorf("listing addresses of bridge %s: %w", m.cfg.Bridge, err)
	}
	have := false
	for _, a := range addrs {
		p, ok := prefixOf(a.IPNet)
		if ok && p == want {
			have = true
			continue
		}
		// The bridge is banger's: an address it should not have (an old
		// subnet, say) goes.
		if err := netlink.AddrDel(link, &a); err != nil {
			return fmt.Errorf("removing address %s from bridge %s: %w", a.IPNet, m.cfg.Bridge, err)
		}
		m.log.Info("removed stale bridge address", "bridge", m.cfg.Bridge, "addr", a.IPNet.String())
	}
	if have {
		return nil
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: want.Addr().AsSlice(), Mask: net.CIDRMask(want.Bits(), 32)}}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("adding address %s to bridge %s: %w", want, m.cfg.Bridge, err)
	}
	m.log.Info("added bridge address", "bridge", m.cfg.Bridge, "addr", want.String())
	return nil
}

func ensureIPForward() error {
	b, err := os.ReadFile(ipForwardPath)
	if err != nil {
		return fmt.Errorf("reading %s: %w", ipForwardPath, err)
	}
	if strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(ipForwardPath, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enabling IPv4 forwarding (%s): %w", ipForwardPath, err)
	}
	return nil
}

// ErrLinks marks a failure to list network links (rather than nftables
// tables), so callers can say which half of the host they cannot read.
var ErrLinks = errors.New("listing links")

// Inventory lists what banger owns on the host: the bridge if present,
// the taps named TapPrefix+N, and whether banger's nftables table exists.
func (m *Manager) Inventory(ctx context.Context) (Inventory, error) {
	var inv Inventory
	links, err := linkList()
	if err != nil {
		return inv, fmt.Errorf("%w: %w", ErrLinks, err)
	}
	for _, l := range links {
		name := l.Attrs().Name
		switch {
		case name == m.cfg.Bridge:
			inv.Bridge = name
		case m.isTap(name) && l.Type() == "tuntap":
			inv.Taps = append(inv.Taps, name)
		}
	}
	m.sortTaps(inv.Taps)
	if err := ctx.Err(); err != nil {
		return inv, err
	}
	exists, err := m.tableExists()
	if err != nil {
		return inv, err
	}
	if exists {
		inv.NFTable = "inet " + m.cfg.Table
	}
	return inv, nil
}

// Teardown removes everything banger added: every tap named TapPrefix+N
// (including those of running VMs, which lose their network), the bridge
// and the nftables table. IPv4 forwarding is left as it is, since other
// software may rely on it. Teardown is idempotent; a later Ensure sets
// everything up again.
func (m *Manager) Teardown(ctx context.Context) error {
	m.setupMu.Lock()
	defer m.setupMu.Unlock()
	m.pool.disable() // waits for a refill in flight
	m.pool.reset()

	var errs []error
	links, err := linkList()
	if err != nil {
		return fmt.Errorf("listing links: %w", err)
	}
	for _, l := range links {
		name := l.Attrs().Name
		if m.isTap(name) && l.Type() == "tuntap" {
			if err := deleteLink(l); err != nil {
				errs = append(errs, fmt.Errorf("deleting tap %s: %w", name, err))
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, l := range links {
		if l.Attrs().Name != m.cfg.Bridge {
			continue
		}
		if _, ok := l.(*netlink.Bridge); !ok {
			errs = append(errs, fmt.Errorf("link %s is a %s, not banger's bridge: leaving it", l.Attrs().Name, l.Type()))
			continue
		}
		if err := deleteLink(l); err != nil {
			errs = append(errs, fmt.Errorf("deleting bridge %s: %w", m.cfg.Bridge, err))
		}
	}
	if err := m.deleteTable(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		m.log.Info("removed host networking", "bridge", m.cfg.Bridge, "table", m.cfg.Table)
	}
	return errors.Join(errs...)
}

// isTap says whether name is one of banger's taps: TapPrefix followed by
// decimal digits only.
func (m *Manager) isTap(name string) bool {
	rest, ok := strings.CutPrefix(name, m.cfg.TapPrefix)
	if !ok || rest == "" {
		return false
	}
	for _, r := range rest {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// tapIndex is N in TapPrefix+N, or -1.
func (m *Manager) tapIndex(name string) int {
	if !m.isTap(name) {
		return -1
	}
	n, err := strconv.Atoi(name[len(m.cfg.TapPrefix):])
	if err != nil {
		return -1
	}
	return n
}

func (m *Manager) sortTaps(names []string) {
	slices.SortFunc(names, func(a, b string) int { return m.tapIndex(a) - m.tapIndex(b) })
}

func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// deleteLink deletes l, treating "already gone" as success.
func deleteLink(l netlink.Link) error {
	err := netlink.LinkDel(l)
	if err != nil && (errors.Is(err, syscall.ENODEV) || isNotFound(err)) {
		return nil
	}
	return err
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// linkList lists links, retrying when the kernel reports that the dump was
// interrupted by a concurrent change (the list would be inconsistent).
func linkList() ([]netlink.Link, error) {
	for i := 0; ; i++ {
		links, err := netlink.LinkList()
		if errors.Is(err, netlink.ErrDumpInterrupted) && i < 10 {
			continue
		}
		return links, err
	}
}

// addrList lists a link's IPv4 addresses, retrying interrupted dumps.
func addrList(link netlink.Link) ([]netlink.Addr, error) {
	for i := 0; ; i++ {
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
		if errors.Is(err, netlink.ErrDumpInterrupted) && i < 10 {
			continue
		}
		return addrs, err
	}
}
