package model

import "net/netip"

// Gateway is the bridge's address in a guest subnet: its first host. The
// bridge takes it, guests route through it and use it for DNS, and the
// IP allocator never hands it out.
func Gateway(subnet netip.Prefix) netip.Addr { return subnet.Masked().Addr().Next() }
