package hostnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
)

// tapPool holds taps that are created, attached to the bridge and up, but
// not yet given to a VM, and the names this manager has claimed (being
// created, pooled or handed out) so that two creations never pick the same
// name. mu is a leaf lock: it is never held during netlink I/O.
type tapPool struct {
	mu        sync.Mutex
	size      int
	ready     []string
	claimed   map[string]bool
	enabled   bool // refills allowed: after Ensure, until Teardown or Close
	refilling bool
	wg        sync.WaitGroup // the refill goroutine in flight, if any
}

func (p *tapPool) enable() {
	p.mu.Lock()
	p.enabled = true
	p.mu.Unlock()
}

// disable stops refills and waits for the one in flight to finish.
func (p *tapPool) disable() {
	p.mu.Lock()
	p.enabled = false
	p.mu.Unlock()
	p.wg.Wait()
}

// reset forgets every tap. Only after disable.
func (p *tapPool) reset() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ready := p.ready
	p.ready = nil
	p.claimed = map[string]bool{}
	return ready
}

// take pops a ready tap, or returns "". The name stays claimed.
func (p *tapPool) take() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ready) == 0 {
		return ""
	}
	name := p.ready[0]
	p.ready = p.ready[1:]
	return name
}

// claimFree claims the lowest-numbered tap name that neither exists on the
// host nor is claimed already.
func (p *tapPool) claimFree(m *Manager, existing map[string]bool) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// The first free name is at most len(existing)+len(claimed) away.
	for n := 0; ; n++ {
		name := m.cfg.TapPrefix + strconv.Itoa(n)
		if len(name) > ifNameMax {
			return "", fmt.Errorf("choosing a tap name: no free name with prefix %q", m.cfg.TapPrefix)
		}
		if !existing[name] && !p.claimed[name] {
			p.claimed[name] = true
			return name, nil
		}
	}
}

func (p *tapPool) unclaim(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.claimed, name)
	p.ready = slices.DeleteFunc(p.ready, func(s string) bool { return s == name })
}

func (p *tapPool) isClaimed(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.claimed[name]
}

// AcquireTap returns the name of a persistent tap device (IFF_TAP |
// IFF_NO_PI) attached to the bridge and up, for a VMM to open. It takes
// one from the pool, refilling the pool in the background, or creates
// one. Ensure must have run. The caller owns the tap until ReleaseTap.
func (m *Manager) AcquireTap(ctx context.Context) (string, error) {
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		name := m.pool.take()
		if name == "" {
			break
		}
		if m.tapReady(name) {
			m.kickRefill()
			m.log.Debug("tap taken from pool", "tap", name)
			return name, nil
		}
		// Someone removed or detached it behind our back: drop it.
		m.log.Warn("pooled tap is no longer usable, discarding it", "tap", name)
		if l, err := netlink.LinkByName(name); err == nil {
			_ = deleteLink(l)
		}
		m.pool.unclaim(name)
	}
	name, err := m.createTap(ctx)
	m.kickRefill()
	if err != nil {
		return "", err
	}
	m.log.Debug("tap created on demand", "tap", name)
	return name, nil
}

// ReleaseTap deletes a tap that AcquireTap returned. A VM's tap is never
// reused: the VMM might still hold it. Releasing a tap that is already
// gone succeeds; a name that is not one of banger's taps is refused.
func (m *Manager) ReleaseTap(_ context.Context, name string) error {
	if !m.isTap(name) {
		return fmt.Errorf("releasing tap %q: not a banger tap (prefix %q)", name, m.cfg.TapPrefix)
	}
	defer m.pool.unclaim(name)
	l, err := netlink.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("looking up tap %s: %w", name, err)
	}
	if l.Type() != "tuntap" {
		return fmt.Errorf("releasing tap %s: link is a %s, not a tap", name, l.Type())
	}
	if err := deleteLink(l); err != nil {
		return fmt.Errorf("deleting tap %s: %w", name, err)
	}
	return nil
}

// PruneTaps deletes banger's taps that are neither in keep (the taps of
// VMs still running, say after a daemon restart) nor held by this manager
// (pooled or handed out). It returns the names it deleted.
func (m *Manager) PruneTaps(ctx context.Context, keep []string) ([]string, error) {
	links, err := linkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	var pruned []string
	var errs []error
	for _, l := range links {
		name := l.Attrs().Name
		if !m.isTap(name) || l.Type() != "tuntap" || slices.Contains(keep, name) || m.pool.isClaimed(name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return pruned, err
		}
		if err := deleteLink(l); err != nil {
			errs = append(errs, fmt.Errorf("deleting tap %s: %w", name, err))
			continue
		}
		pruned = append(pruned, name)
	}
	m.sortTaps(pruned)
	return pruned, errors.Join(errs...)
}

// Close stops refilling the pool and deletes the pooled (never handed
// out) taps. Taps handed out, and the bridge and table, stay: running VMs
// keep their network when the daemon stops. Ensure re-enables the pool.
func (m *Manager) Close(ctx context.Context) error {
	m.setupMu.Lock()
	defer m.setupMu.Unlock()
	m.pool.disable()
	var errs []error
	for _, name := range m.pool.reset() {
		if err := m.ReleaseTap(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// kickRefill starts the refill goroutine unless one runs, the pool is
// full, or refills are disabled.
func (m *Manager) kickRefill() {
	p := &m.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.enabled || p.refilling || len(p.ready) >= p.size {
		return
	}
	p.refilling = true
	p.wg.Add(1)
	go m.refill()
}

func (m *Manager) refill() {
	p := &m.pool
	defer p.wg.Done()
	for {
		p.mu.Lock()
		if !p.enabled || len(p.ready) >= p.size {
			p.refilling = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()

		name, err := m.createTap(context.Background())
		if err != nil {
			m.log.Warn("refilling the tap pool", "err", err)
			p.mu.Lock()
			p.refilling = false
			p.mu.Unlock()
			return
		}
		p.mu.Lock()
		keep := p.enabled
		if keep {
			p.ready = append(p.ready, name)
		}
		p.mu.Unlock()
		if !keep {
			_ = m.ReleaseTap(context.Background(), name)
		}
	}
}

// tapReady says whether name still exists as a tap enslaved to the
// bridge and up.
func (m *Manager) tapReady(name string) bool {
	l, err := netlink.LinkByName(name)
	if err != nil || l.Type() != "tuntap" || l.Attrs().Flags&net.FlagUp == 0 {
		return false
	}
	br, err := netlink.LinkByName(m.cfg.Bridge)
	return err == nil && l.Attrs().MasterIndex == br.Attrs().Index
}

// createTap creates a persistent tap with a free name, attaches it to the
// bridge and brings it up.
func (m *Manager) createTap(ctx context.Context) (string, error) {
	br, err := netlink.LinkByName(m.cfg.Bridge)
	if err != nil {
		if isNotFound(err) {
			return "", fmt.Errorf("creating a tap: bridge %s does not exist (host networking not set up)", m.cfg.Bridge)
		}
		return "", fmt.Errorf("looking up bridge %s: %w", m.cfg.Bridge, err)
	}
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		links, err := linkList()
		if err != nil {
			return "", fmt.Errorf("listing links: %w", err)
		}
		existing := make(map[string]bool, len(links))
		for _, l := range links {
			existing[l.Attrs().Name] = true
		}
		name, err := m.pool.claimFree(m, existing)
		if err != nil {
			return "", err
		}
		err = m.addTap(name, br.Attrs().Index)
		if err == nil {
			return name, nil
		}
		m.pool.unclaim(name)
		// Another program took the name between the listing and the
		// creation (TUN_EXCL makes that EBUSY): try the next one. netlink
		// formats the errno without wrapping it, hence the text match.
		if attempt < 5 && (errors.Is(err, syscall.EBUSY) || strings.Contains(err.Error(), syscall.EBUSY.Error())) {
			continue
		}
		return "", err
	}
}

func (m *Manager) addTap(name string, bridgeIndex int) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	attrs.MasterIndex = bridgeIndex
	tap := &netlink.Tuntap{
		LinkAttrs: attrs,
		Mode:      netlink.TUNTAP_MODE_TAP,
		// TUN_EXCL: fail rather than attach to a device of the same name.
		// A VMM reopening the persistent tap sets its own flags (vnet_hdr).
		Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_TUN_EXCL | netlink.TUNTAP_ONE_QUEUE,
		Owner: m.cfg.TapOwner,
	}
	if err := netlink.LinkAdd(tap); err != nil {
		return fmt.Errorf("creating tap %s: %w", name, err)
	}
	l, err := netlink.LinkByName(name)
	if err == nil && m.cfg.IsolateVMs {
		err = m.ensureIsolation(l)
	}
	if err == nil {
		err = netlink.LinkSetUp(l)
	}
	if err != nil {
		if l != nil {
			_ = deleteLink(l)
		}
		return fmt.Errorf("bringing up tap %s: %w", name, err)
	}
	return nil
}
