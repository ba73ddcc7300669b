package hostnet

import (
	"bytes"
	"fmt"
	"net"
	"reflect"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Chain names in banger's table.
const (
	chainPostrouting = "postrouting"
	chainForward     = "forward"
)

// nftChain is one chain of banger's table and its rules, in order.
type nftChain struct {
	chain *nftables.Chain
	rules []*nftables.Rule
}

func (m *Manager) table() *nftables.Table {
	return &nftables.Table{Name: m.cfg.Table, Family: nftables.TableFamilyINet}
}

// desiredNFT is banger's table as nft would print it:
//
//	table inet banger {
//	  chain postrouting {
//	    type nat hook postrouting priority srcnat; policy accept;
//	    ip saddr SUBNET ip daddr != SUBNET masquerade comment "banger: nat"
//	  }
//	  chain forward {
//	    type filter hook forward priority filter; policy accept;
//	    iifname BRIDGE oifname BRIDGE drop comment "banger: no vm to vm"  (isolate_vms only)
//	    iifname BRIDGE accept comment "banger: from guests"
//	    oifname BRIDGE accept comment "banger: to guests"
//	  }
//	}
//
// The forward chain's policy is accept: banger's table must not drop
// traffic that is none of its business. Its rules matter only to count and
// document; a drop in another table (Docker's FORWARD policy, say) still
// applies.
func (m *Manager) desiredNFT() []nftChain {
	t := m.table()
	accept := nftables.ChainPolicyAccept
	post := &nftables.Chain{
		Name: chainPostrouting, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
		Policy: &accept,
	}
	fwd := &nftables.Chain{
		Name: chainForward, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter,
		Policy: &accept,
	}

	subnet := m.cfg.Subnet
	netAddr := subnet.Addr().AsSlice()
	mask := []byte(net.CIDRMask(subnet.Bits(), 32))
	ipField := func(offset uint32, op expr.CmpOp) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: op, Register: 1, Data: netAddr},
		}
	}
	masq := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
	masq = append(masq, ipField(12, expr.CmpOpEq)...)  // ip saddr SUBNET
	masq = append(masq, ipField(16, expr.CmpOpNeq)...) // ip daddr != SUBNET
	masq = append(masq, &expr.Masq{})

	ifname := func(key expr.MetaKey) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: key, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(m.cfg.Bridge)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}
	}
	rule := func(c *nftables.Chain, comment string, exprs []expr.Any) *nftables.Rule {
		return &nftables.Rule{Table: t, Chain: c, Exprs: exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, comment)}
	}
	var fwdRules []*nftables.Rule
	if m.cfg.IsolateVMs {
		// Guest to guest through the host's routing: the bridge's port
		// isolation stops only frames between taps.
		fwdRules = append(fwdRules, rule(fwd, "banger: no vm to vm", []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(m.cfg.Bridge)},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(m.cfg.Bridge)},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}))
	}
	fwdRules = append(fwdRules,
		rule(fwd, "banger: from guests", ifname(expr.MetaKeyIIFNAME)),
		rule(fwd, "banger: to guests", ifname(expr.MetaKeyOIFNAME)))
	return []nftChain{
		{post, []*nftables.Rule{rule(post, "banger: nat", masq)}},
		{fwd, fwdRules},
	}
}

// ifnameBytes is name NUL-padded to IFNAMSIZ, as nft compares interface names.
func ifnameBytes(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func (m *Manager) tableExists() (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("opening nftables: %w", err)
	}
	return m.tableExistsOn(c)
}

func (m *Manager) tableExistsOn(c *nftables.Conn) (bool, error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("listing nftables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == m.cfg.Table {
			return true, nil
		}
	}
	return false, nil
}

// ensureNFT leaves banger's table alone if it already holds exactly the
// desired chains and rules, and otherwise replaces it in one atomic batch.
func (m *Manager) ensureNFT() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("opening nftables: %w", err)
	}
	want := m.desiredNFT()
	exists, err := m.tableExistsOn(c)
	if err != nil {
		return err
	}
	if exists {
		same, err := m.tableMatches(c, want)
		if err != nil {
			return err
		}
		if same {
			return nil
		}
		c.DelTable(m.table())
	}
	c.AddTable(m.table())
	for _, ch := range want {
		c.AddChain(ch.chain)
		for _, r := range ch.rules {
			c.AddRule(r)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("writing nftables table inet %s: %w", m.cfg.Table, err)
	}
	if exists {
		m.log.Info("replaced nftables table that differed", "table", "inet "+m.cfg.Table)
	} else {
		m.log.Info("created nftables table", "table", "inet "+m.cfg.Table)
	}
	return nil
}

// tableMatches compares the kernel's copy of banger's table with want:
// the same chains (type, hook, priority, policy) and, in each, the same
// rules in the same order.
func (m *Manager) tableMatches(c *nftables.Conn, want []nftChain) (bool, error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("listing nftables chains: %w", err)
	}
	have := map[string]*nftables.Chain{}
	for _, ch := range chains {
		if ch.Table != nil && ch.Table.Name == m.cfg.Table {
			have[ch.Name] = ch
		}
	}
	if len(have) != len(want) {
		return false, nil
	}
	for _, w := range want {
		h := have[w.chain.Name]
		if h == nil || !sameChain(h, w.chain) {
			return false, nil
		}
		rules, err := c.GetRules(m.table(), h)
		if err != nil {
			return false, fmt.Errorf("listing rules of chain %s: %w", h.Name, err)
		}
		if len(rules) != len(w.rules) {
			return false, nil
		}
		for i, r := range rules {
			if !bytes.Equal(r.UserData, w.rules[i].UserData) || !reflect.DeepEqual(r.Exprs, w.rules[i].Exprs) {
				return false, nil
			}
		}
	}
	return true, nil
}

func sameChain(a, b *nftables.Chain) bool {
	return a.Type == b.Type &&
		derefEq(a.Hooknum, b.Hooknum) &&
		derefEq(a.Priority, b.Priority) &&
		derefEq(a.Policy, b.Policy)
}

func derefEq[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func (m *Manager) deleteTable() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("opening nftables: %w", err)
	}
	exists, err := m.tableExistsOn(c)
	if err != nil || !exists {
		return err
	}
	c.DelTable(m.table())
	if err := c.Flush(); err != nil {
		return fmt.Errorf("deleting nftables table inet %s: %w", m.cfg.Table, err)
	}
	return nil
}
