package hostnet

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
)

func TestNewDefaults(t *testing.T) {
	m := New(Config{}, nil)
	c := m.Config()
	if c.Bridge != "banger0" || c.Table != "banger" || c.TapPrefix != "bgtap" || c.PoolSize != 2 {
		t.Fatalf("defaults = %+v", c)
	}
	if c.Subnet != netip.MustParsePrefix("172.16.0.0/24") {
		t.Fatalf("default subnet = %s", c.Subnet)
	}
	if got := m.Gateway(); got != netip.MustParseAddr("172.16.0.1") {
		t.Fatalf("gateway = %s", got)
	}
	// A subnet given with host bits set is masked; the gateway is .1.
	m = New(Config{Subnet: netip.MustParsePrefix("10.9.8.77/16"), PoolSize: -1}, nil)
	if m.Config().Subnet.String() != "10.9.0.0/16" || m.Gateway().String() != "10.9.0.1" || m.Config().PoolSize != 0 {
		t.Fatalf("config = %+v, gateway %s", m.Config(), m.Gateway())
	}
}

func TestValidate(t *testing.T) {
	bad := []struct {
		name string
		cfg  Config
		want string
	}{
		{"long bridge", Config{Bridge: "a-very-long-bridge"}, "bridge name"},
		{"bridge with slash", Config{Bridge: "br/0"}, "bridge name"},
		{"bridge with space", Config{Bridge: "br 0"}, "bridge name"},
		{"long tap prefix", Config{TapPrefix: "abcdefghijklmnop"}, "tap prefix"},
		{"tap prefix leaves one digit", Config{TapPrefix: "abcdefghijklmn"}, "two digits"},
		{"bridge looks like a tap", Config{Bridge: "bgtap1"}, "looks like one of banger's taps"},
		{"ipv6 subnet", Config{Subnet: netip.MustParsePrefix("fd00::/64")}, "IPv4"},
		{"subnet too small", Config{Subnet: netip.MustParsePrefix("10.0.0.0/31")}, "prefix length"},
		{"subnet too large", Config{Subnet: netip.MustParsePrefix("10.0.0.0/7")}, "prefix length"},
		{"table with space", Config{Table: "a b"}, "table name"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			err := New(tc.cfg, nil).validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := New(Config{}, nil).validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestTapNames(t *testing.T) {
	m := New(Config{}, nil)
	for name, want := range map[string]int{
		"bgtap0": 0, "bgtap12": 12, "bgtap": -1, "bgtapx": -1, "bgtap1a": -1, "xbgtap1": -1, "banger0": -1, "bgtap-1": -1,
	} {
		if got := m.tapIndex(name); got != want {
			t.Errorf("tapIndex(%q) = %d, want %d", name, got, want)
		}
	}
	names := []string{"bgtap10", "bgtap2", "bgtap0", "bgtap1"}
	m.sortTaps(names)
	if !slices.Equal(names, []string{"bgtap0", "bgtap1", "bgtap2", "bgtap10"}) {
		t.Fatalf("sorted = %v", names)
	}
}

func TestClaimFree(t *testing.T) {
	m := New(Config{TapPrefix: "tp"}, nil)
	existing := map[string]bool{"tp0": true, "tp2": true}
	var got []string
	for range 3 {
		name, err := m.pool.claimFree(m, existing)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, name)
	}
	if !slices.Equal(got, []string{"tp1", "tp3", "tp4"}) {
		t.Fatalf("claimed %v", got)
	}
	m.pool.unclaim("tp3")
	if name, _ := m.pool.claimFree(m, existing); name != "tp3" {
		t.Fatalf("after unclaim got %s, want tp3", name)
	}
	// A prefix of 13 characters leaves room for tp..99 only.
	m = New(Config{TapPrefix: "abcdefghijklm"}, nil)
	full := map[string]bool{}
	for i := range 100 {
		full["abcdefghijklm"+strconv.Itoa(i)] = true
	}
	if _, err := m.pool.claimFree(m, full); err == nil || !strings.Contains(err.Error(), "no free name") {
		t.Fatalf("claimFree with every name taken = %v", err)
	}
}

func TestDesiredNFT(t *testing.T) {
	m := New(Config{Subnet: netip.MustParsePrefix("10.20.30.0/24"), Bridge: "br9"}, nil)
	chains := m.desiredNFT()
	if len(chains) != 2 || chains[0].chain.Name != "postrouting" || chains[1].chain.Name != "forward" {
		t.Fatalf("chains = %+v", chains)
	}
	post := chains[0].rules[0].Exprs
	var cmps [][]byte
	for _, e := range post {
		if c, ok := e.(*expr.Cmp); ok {
			cmps = append(cmps, c.Data)
		}
	}
	// nfproto ipv4, saddr == 10.20.30.0, daddr != 10.20.30.0
	if len(cmps) != 3 || string(cmps[1]) != string([]byte{10, 20, 30, 0}) {
		t.Fatalf("masquerade compares = %v", cmps)
	}
	if _, ok := post[len(post)-1].(*expr.Masq); !ok {
		t.Fatalf("last expression is %T, want masquerade", post[len(post)-1])
	}
	for _, r := range chains[1].rules {
		c := r.Exprs[1].(*expr.Cmp)
		if len(c.Data) != 16 || !strings.HasPrefix(string(c.Data), "br9\x00") {
			t.Fatalf("interface compare = %q", c.Data)
		}
	}
}
