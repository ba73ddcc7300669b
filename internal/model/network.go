package model

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
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

// Network modes. A bridge VM has a NIC on banger's bridge, an IP lease and
// a DNS name; it reaches the host, other bridge VMs and (through NAT) the
// outside. A none VM has no network device at all: banger reaches its SSH
// and published ports through the agent's tunnel on a virtio-serial port
// or vsock, and the guest reaches nothing.
const (
	NetworkBridge = "bridge"
	NetworkNone   = "none"
)

// ValidateNetwork checks a --network value.
func ValidateNetwork(s string) error {
	switch s {
	case NetworkBridge, NetworkNone:
		return nil
	}
	return invalid("network", fmt.Sprintf("%q is not a network mode; use %s (the default) or %s (no network device at all)", s, NetworkBridge, NetworkNone))
}

// NetworkMode is the VM's network mode, NetworkBridge when unset.
func (v VM) NetworkMode() string {
	if v.Network == "" {
		return NetworkBridge
	}
	return v.Network
}

// PortMap publishes a guest port on the host's loopback, as `docker run
// -p HOST:GUEST` does.
type PortMap struct {
	Host, Guest int
	// Proto is "tcp", the only protocol banger forwards.
	Proto string
}

// String is the map as --publish takes it: "8080:80/tcp".
func (p PortMap) String() string { return fmt.Sprintf("%d:%d/%s", p.Host, p.Guest, p.Proto) }

// ParsePortMap reads HOSTPORT:GUESTPORT[/tcp].
func ParsePortMap(s string) (PortMap, error) {
	spec, proto, hasProto := strings.Cut(s, "/")
	if !hasProto {
		proto = "tcp"
	}
	if proto != "tcp" {
		return PortMap{}, invalid("publish", fmt.Sprintf("%q: only tcp ports can be published", s))
	}
	hostStr, guestStr, ok := strings.Cut(spec, ":")
	if !ok || strings.Contains(guestStr, ":") {
		return PortMap{}, invalid("publish", fmt.Sprintf("%q is not HOSTPORT:GUESTPORT[/tcp], such as 8080:80", s))
	}
	var ports [2]int
	for i, p := range []string{hostStr, guestStr} {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return PortMap{}, invalid("publish", fmt.Sprintf("%q: %q is not a port number (1-65535)", s, p))
		}
		ports[i] = n
	}
	return PortMap{Host: ports[0], Guest: ports[1], Proto: proto}, nil
}

// ParsePortMaps reads every --publish value; a host port given twice is an
// error.
func ParsePortMaps(specs []string) ([]PortMap, error) {
	var maps []PortMap
	seen := map[int]bool{}
	for _, s := range specs {
		p, err := ParsePortMap(s)
		if err != nil {
			return nil, err
		}
		if seen[p.Host] {
			return nil, invalid("publish", fmt.Sprintf("host port %d is published twice", p.Host))
		}
		seen[p.Host] = true
		maps = append(maps, p)
	}
	return maps, nil
}
