// Package dns is banger's small DNS server: it answers for "<name>.vm."
// from the VMs banger knows (authoritative for "vm.") and forwards every
// other query to upstream resolvers, so that guests can use the bridge's
// address as their only resolver and VM names resolve from the host and
// between guests.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// Zone is the domain the server is authoritative for.
const Zone = "vm."

// defaultResolvConf is where upstreams come from when none are given.
const defaultResolvConf = "/etc/resolv.conf"

// Server answers for the vm. zone and forwards the rest. It is safe for
// concurrent use; Set may be called while serving.
type Server struct {
	log        *slog.Logger
	upstreams  []string // as given to New, normalised to host:port
	resolvConf string
	timeout    time.Duration // per upstream attempt
	records    atomic.Pointer[map[string]netip.Addr]

	// started, if set, is called with the bound addresses once both
	// listeners serve (tests use it to learn a random port).
	started func(udp, tcp net.Addr)
}

// New makes a server answering A (and AAAA) queries for "<name>.vm." from
// its records and forwarding every other query to upstreams (host:port, or
// a bare host meaning port 53). With no upstreams, the nameservers of
// /etc/resolv.conf are used, skipping the server's own address. A query
// that no upstream answers gets SERVFAIL.
func New(upstreams []string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:        log.With("component", "dns"),
		resolvConf: defaultResolvConf,
		timeout:    2 * time.Second,
	}
	for _, u := range upstreams {
		s.upstreams = append(s.upstreams, withPort(u))
	}
	empty := map[string]netip.Addr{}
	s.records.Store(&empty)
	return s
}

// Set replaces all records atomically: name (a single DNS label, without
// ".vm") → address. Names are case-insensitive.
func (s *Server) Set(records map[string]netip.Addr) {
	m := make(map[string]netip.Addr, len(records))
	for name, addr := range records {
		name = strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(name), "."), ".vm")
		if name == "" || strings.Contains(name, ".") || !addr.IsValid() {
			s.log.Warn("ignoring DNS record", "name", name, "addr", addr)
			continue
		}
		m[name] = addr.Unmap()
	}
	s.records.Store(&m)
}

// ListenAndServe serves DNS over UDP and TCP on addr (e.g.
// "172.16.0.1:53") until ctx ends, then returns nil. It returns an error
// at once if it cannot bind either socket, and if a listener fails later.
// With port 0, UDP and TCP share one random port.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	pc, l, err := listen(addr)
	if err != nil {
		return err
	}
	defer pc.Close()
	defer l.Close()

	h := &handler{s: s, ctx: ctx, upstreams: s.upstreamsFor(pc.LocalAddr())}
	if len(h.upstreams) == 0 {
		s.log.Warn("no upstream resolvers: only names under "+Zone+" will resolve", "resolv_conf", s.resolvConf)
	}
	ready := make(chan struct{}, 2)
	notify := func() { ready <- struct{}{} }
	srvs := []*mdns.Server{
		{PacketConn: pc, Handler: h, NotifyStartedFunc: notify},
		{Listener: l, Handler: h, NotifyStartedFunc: notify},
	}
	errc := make(chan error, len(srvs))
	for _, srv := range srvs {
		go func() { errc <- srv.ActivateAndServe() }()
	}
	shutdown := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, srv := range srvs {
			_ = srv.ShutdownContext(sctx)
		}
	}

	// Wait until both serve, so that shutting down cannot race starting.
	for range srvs {
		select {
		case <-ready:
		case err := <-errc:
			shutdown()
			return fmt.Errorf("serving DNS on %s: %w", addr, err)
		}
	}
	s.log.Info("serving DNS", "udp", pc.LocalAddr().String(), "tcp", l.Addr().String(), "upstreams", h.upstreams)
	if s.started != nil {
		s.started(pc.LocalAddr(), l.Addr())
	}
	select {
	case <-ctx.Done():
		shutdown()
		return nil
	case err := <-errc:
		shutdown()
		if err == nil {
			err = errors.New("listener stopped")
		}
		return fmt.Errorf("serving DNS on %s: %w", addr, err)
	}
}

// listen binds UDP and then TCP on the same address and port.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing DNS listen address %q: %w", addr, err)
	}
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("binding DNS server to udp %s: %w", addr, err)
		}
		tcpAddr := addr
		if port == "0" {
			tcpAddr = net.JoinHostPort(host, strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port))
		}
		l, err := net.Listen("tcp", tcpAddr)
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if port != "0" || attempt == 4 {
			return nil, nil, fmt.Errorf("binding DNS server to tcp %s: %w", tcpAddr, err)
		}
		// The random UDP port was taken for TCP: try another.
	}
}

// upstreamsFor is the configured upstreams, or those of resolv.conf, less
// the server's own address.
func (s *Server) upstreamsFor(self net.Addr) []string {
	ups := s.upstreams
	if len(ups) == 0 {
		var err error
		if ups, err = readResolvConf(s.resolvConf); err != nil {
			s.log.Warn("reading upstream resolvers", "err", err)
		}
	}
	selfAP, _ := netip.ParseAddrPort(self.String())
	var out []string
	for _, u := range ups {
		ap, err := netip.ParseAddrPort(u)
		if err == nil && isSelf(ap, selfAP) {
			continue
		}
		out = append(out, u)
	}
	return out
}

// isSelf says whether upstream u is the server's own socket self
// (forwarding to it would loop).
func isSelf(u, self netip.AddrPort) bool {
	if !self.IsValid() || u.Port() != self.Port() {
		return false
	}
	ua, sa := u.Addr().Unmap(), self.Addr().Unmap()
	return ua == sa || (sa.IsUnspecified() && (ua.IsLoopback() || ua.IsUnspecified()))
}

// readResolvConf returns the nameservers of a resolv.conf file as host:port.
func readResolvConf(path string) ([]string, error) {
	cfg, err := mdns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var out []string
	for _, srv := range cfg.Servers {
		out = append(out, net.JoinHostPort(strings.Trim(srv, "[]"), cfg.Port))
	}
	return out, nil
}

func withPort(u string) string {
	if _, _, err := net.SplitHostPort(u); err == nil {
		return u
	}
	return net.JoinHostPort(strings.Trim(u, "[]"), "53")
}

// handler serves one ListenAndServe call.
type handler struct {
	s         *Server
	ctx       context.Context // ends forwarding when the server stops
	upstreams []string
}

func (h *handler) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	var resp *mdns.Msg
	switch {
	case req.Opcode != mdns.OpcodeQuery:
		resp = new(mdns.Msg).SetRcode(req, mdns.RcodeNotImplemented)
	case len(req.Question) != 1:
		resp = new(mdns.Msg).SetRcode(req, mdns.RcodeFormatError)
	case mdns.IsSubDomain(Zone, strings.ToLower(req.Question[0].Name)):
		resp = h.s.answer(req)
	default:
		resp = h.forward(w, req)
	}
	if err := w.WriteMsg(resp); err != nil {
		h.s.log.Debug("writing DNS reply", "err", err, "to", w.RemoteAddr().String())
	}
}

// answer replies from the records, authoritatively.
func (s *Server) answer(req *mdns.Msg) *mdns.Msg {
	q := req.Question[0]
	resp := new(mdns.Msg).SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = true
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(max(opt.UDPSize(), mdns.MinMsgSize), false)
	}
	labels := mdns.SplitDomainName(strings.ToLower(q.Name))
	switch len(labels) {
	case 1: // vm. itself
		if q.Qtype == mdns.TypeSOA || q.Qtype == mdns.TypeANY {
			resp.Answer = append(resp.Answer, soa())
		} else {
			resp.Ns = append(resp.Ns, soa())
		}
		return resp
	case 2:
	default:
		resp.Rcode = mdns.RcodeNameError
		resp.Ns = append(resp.Ns, soa())
		return resp
	}
	addr, ok := (*s.records.Load())[labels[0]]
	if !ok {
		resp.Rcode = mdns.RcodeNameError
		resp.Ns = append(resp.Ns, soa())
		return resp
	}
	hdr := mdns.RR_Header{Name: q.Name, Class: mdns.ClassINET, Ttl: 0}
	all := q.Qtype == mdns.TypeANY
	switch {
	case addr.Is4() && (q.Qtype == mdns.TypeA || all):
		hdr.Rrtype = mdns.TypeA
		resp.Answer = append(resp.Answer, &mdns.A{Hdr: hdr, A: addr.AsSlice()})
	case addr.Is6() && (q.Qtype == mdns.TypeAAAA || all):
		hdr.Rrtype = mdns.TypeAAAA
		resp.Answer = append(resp.Answer, &mdns.AAAA{Hdr: hdr, AAAA: addr.AsSlice()})
	}
	if len(resp.Answer) == 0 {
		resp.Ns = append(resp.Ns, soa()) // NODATA
	}
	return resp
}

// soa is the vm. zone's SOA, with zero TTLs: VMs come and go.
func soa() *mdns.SOA {
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: Zone, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: 0},
		Ns:      "ns." + Zone,
		Mbox:    "hostmaster." + Zone,
		Serial:  1,
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 0,
	}
}

// forward asks each upstream in turn, over the transport the query came
// in on, and returns the first useful answer (SERVFAIL if none).
func (h *handler) forward(w mdns.ResponseWriter, req *mdns.Msg) *mdns.Msg {
	network := "udp"
	if _, ok := w.LocalAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	c := &mdns.Client{Net: network, Timeout: h.s.timeout}
	var last *mdns.Msg
	for _, up := range h.upstreams {
		ctx, cancel := context.WithTimeout(h.ctx, h.s.timeout)
		resp, _, err := c.ExchangeContext(ctx, req, up)
		cancel()
		if err != nil {
			h.s.log.Debug("forwarding DNS query", "upstream", up, "name", req.Question[0].Name, "err", err)
			continue
		}
		if resp.Rcode == mdns.RcodeServerFailure || resp.Rcode == mdns.RcodeRefused {
			last = resp
			continue
		}
		return resp
	}
	if last != nil {
		return last
	}
	resp := new(mdns.Msg).SetRcode(req, mdns.RcodeServerFailure)
	resp.RecursionAvailable = true
	return resp
}
