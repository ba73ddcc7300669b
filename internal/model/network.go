package model

import (
	"fmt"
	"net/netip"
)

// Host networking defaults, shared by the config file and host networking.
const (
	DefaultBridge    = "banger0"
	DefaultSubnetStr = "172.16.0.0/24"
)

// DefaultSubnet is the guest network when the config names none.
var DefaultSubnet = netip.MustParsePrefix(DefaultSubnetStr)

// DefaultDebianMirror is where the debian-12 image is built from.
const DefaultDebianMirror = "http://deb.debian.org/debian"

// Subnet prefix lengths banger accepts: /16 leaves room for the allocator's
// tables, /29 for a bridge and a handful of guests.
const (
	MinSubnetBits = 16
	MaxSubnetBits = 29
)

// ValidateSubnet checks a guest subnet: IPv4, /16 to /29.
func ValidateSubnet(p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is4() {
		return invalid("subnet", fmt.Sprintf("%s is not an IPv4 CIDR such as %s", p, DefaultSubnetStr))
	}
	if b := p.Bits(); b < MinSubnetBits || b > MaxSubnetBits {
		return invalid("subnet", fmt.Sprintf("%s: the prefix length must be between /%d and /%d", p, MinSubnetBits, MaxSubnetBits))
	}
	return nil
}

// Gateway is the bridge's address in a guest subnet: its first host. The
// bridge takes it, guests route through it and use it for DNS, and the
// IP allocator never hands it out.
func Gateway(subnet netip.Prefix) netip.Addr { return subnet.Masked().Addr().Next() }
