package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/banger-dev/banger/internal/host/dns"
	"github.com/banger-dev/banger/internal/host/hostnet"
)

// network joins host networking and the DNS server into what boot needs:
// the DNS server can only bind once the bridge has its address, so it
// starts the first time the network is set up.
type network struct {
	*hostnet.Manager
	dns  *dns.Server
	life context.Context
	log  *slog.Logger

	mu    sync.Mutex
	dnsUp bool
}

// Ensure sets up the bridge, NAT and taps pool, then starts DNS once.
func (n *network) Ensure(ctx context.Context) error {
	if err := n.Manager.Ensure(ctx); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dnsUp {
		return nil
	}
	addr := net.JoinHostPort(n.Gateway().String(), "53")
	errc := make(chan error, 1)
	go func() { errc <- n.dns.ListenAndServe(n.life, addr) }()
	select {
	case err := <-errc:
		return fmt.Errorf("starting the dns server on %s: %w", addr, err)
	case <-time.After(300 * time.Millisecond):
	}
	n.dnsUp = true
	n.log.Info("dns server listening", "addr", addr)
	return nil
}
