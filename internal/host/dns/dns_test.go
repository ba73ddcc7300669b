package dns

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// All servers here listen on 127.0.0.1 with random ports; the only
// upstreams are in-test servers on 127.0.0.1.

type testServer struct {
	udp, tcp string
}

// start runs s on 127.0.0.1:0 until the test ends.
func start(t *testing.T, s *Server) testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan testServer, 1)
	s.started = func(u, tc net.Addr) { addrs <- testServer{u.String(), tc.String()} }
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx, "127.0.0.1:0") }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ListenAndServe after cancel = %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("ListenAndServe did not return after its context ended")
		}
	})
	select {
	case ts := <-addrs:
		if ts.udp != ts.tcp {
			t.Fatalf("udp %s and tcp %s differ", ts.udp, ts.tcp)
		}
		return ts
	case err := <-done:
		t.Fatalf("ListenAndServe = %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("server did not start")
	}
	return testServer{}
}

func query(t *testing.T, network, addr, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg).SetQuestion(name, qtype)
	c := &mdns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s query %s %s: %v", network, name, mdns.TypeToString[qtype], err)
	}
	if resp.Id != m.Id {
		t.Fatalf("reply id %d, query id %d", resp.Id, m.Id)
	}
	return resp
}

func answerIPs(resp *mdns.Msg) []string {
	var out []string
	for _, rr := range resp.Answer {
		switch rr := rr.(type) {
		case *mdns.A:
			out = append(out, rr.A.String())
		case *mdns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	return out
}

func TestRecords(t *testing.T) {
	s := New([]string{"127.0.0.1:1"}, nil)
	s.Set(map[string]netip.Addr{
		"web": netip.MustParseAddr("172.16.0.2"),
		"DB":  netip.MustParseAddr("172.16.0.3"),
		"v6":  netip.MustParseAddr("fd00::5"),
	})
	ts := start(t, s)

	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			cases := []struct {
				name  string
				qtype uint16
				rcode int
				ips   []string
			}{
				{"web.vm.", mdns.TypeA, mdns.RcodeSuccess, []string{"172.16.0.2"}},
				{"WeB.Vm.", mdns.TypeA, mdns.RcodeSuccess, []string{"172.16.0.2"}},
				{"db.vm.", mdns.TypeA, mdns.RcodeSuccess, []string{"172.16.0.3"}},
				{"web.vm.", mdns.TypeAAAA, mdns.RcodeSuccess, nil},
				{"web.vm.", mdns.TypeMX, mdns.RcodeSuccess, nil},
				{"v6.vm.", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"fd00::5"}},
				{"v6.vm.", mdns.TypeA, mdns.RcodeSuccess, nil},
				{"nope.vm.", mdns.TypeA, mdns.RcodeNameError, nil},
				{"NOPE.VM.", mdns.TypeAAAA, mdns.RcodeNameError, nil},
				{"a.web.vm.", mdns.TypeA, mdns.RcodeNameError, nil},
				{"vm.", mdns.TypeA, mdns.RcodeSuccess, nil},
			}
			for _, tc := range cases {
				resp := query(t, network, ts.udp, tc.name, tc.qtype)
				what := tc.name + " " + mdns.TypeToString[tc.qtype]
				if resp.Rcode != tc.rcode {
					t.Errorf("%s: rcode %s, want %s", what, mdns.RcodeToString[resp.Rcode], mdns.RcodeToString[tc.rcode])
				}
				if !resp.Authoritative {
					t.Errorf("%s: not authoritative", what)
				}
				if got := answerIPs(resp); !slices.Equal(got, tc.ips) {
					t.Errorf("%s: answers %v, want %v", what, got, tc.ips)
				}
				for _, rr := range resp.Answer {
					if rr.Header().Name != tc.name {
						t.Errorf("%s: answer owner %q does not echo the question", what, rr.Header().Name)
					}
				}
				if len(resp.Answer) == 0 {
					if len(resp.Ns) != 1 || resp.Ns[0].Header().Rrtype != mdns.TypeSOA {
						t.Errorf("%s: negative answer without the zone's SOA: %v", what, resp.Ns)
					}
				}
			}
		})
	}
	if resp := query(t, "udp", ts.udp, "vm.", mdns.TypeSOA); len(resp.Answer) != 1 {
		t.Fatalf("SOA vm. = %v", resp)
	}
}

func TestSetReplaces(t *testing.T) {
	s := New([]string{"127.0.0.1:1"}, nil)
	s.Set(map[string]netip.Addr{"web": netip.MustParseAddr("172.16.0.2")})
	ts := start(t, s)
	if got := answerIPs(query(t, "udp", ts.udp, "web.vm.", mdns.TypeA)); !slices.Equal(got, []string{"172.16.0.2"}) {
		t.Fatalf("web = %v", got)
	}
	s.Set(map[string]netip.Addr{"api.vm": netip.MustParseAddr("172.16.0.9"), "bad.name": netip.MustParseAddr("172.16.0.10")})
	if resp := query(t, "udp", ts.udp, "web.vm.", mdns.TypeA); resp.Rcode != mdns.RcodeNameError {
		t.Fatalf("web after Set = %s, want NXDOMAIN", mdns.RcodeToString[resp.Rcode])
	}
	if got := answerIPs(query(t, "udp", ts.udp, "api.vm.", mdns.TypeA)); !slices.Equal(got, []string{"172.16.0.9"}) {
		t.Fatalf("api = %v", got)
	}
	if resp := query(t, "udp", ts.udp, "bad.name.vm.", mdns.TypeA); resp.Rcode != mdns.RcodeNameError {
		t.Fatalf("a dotted name was accepted as a record")
	}
	s.Set(nil)
	if resp := query(t, "udp", ts.udp, "api.vm.", mdns.TypeA); resp.Rcode != mdns.RcodeNameError {
		t.Fatalf("api after Set(nil) = %s", mdns.RcodeToString[resp.Rcode])
	}

	// Set while queries run (for the race detector).
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.Set(map[string]netip.Addr{"web": netip.AddrFrom4([4]byte{172, 16, 0, byte(2 + i%2)})})
		}
	})
	for range 50 {
		resp := query(t, "udp", ts.udp, "web.vm.", mdns.TypeA)
		if resp.Rcode != mdns.RcodeSuccess && resp.Rcode != mdns.RcodeNameError {
			t.Fatalf("rcode %d during Set", resp.Rcode)
		}
	}
	close(stop)
	wg.Wait()
}

// upstream is an in-test resolver on 127.0.0.1 answering every A query
// with ip (or SERVFAIL to everything if ip is ""), on UDP and TCP; it
// records the queries it gets.
type upstream struct {
	addr string
	mu   sync.Mutex
	seen []string // "udp example.com."
}

func startUpstream(t *testing.T, ip string) *upstream {
	t.Helper()
	u := &upstream{}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = pc.LocalAddr().String()
	l, err := net.Listen("tcp", u.addr)
	if err != nil {
		t.Skipf("random UDP port not free for TCP: %v", err)
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		q := req.Question[0]
		u.mu.Lock()
		u.seen = append(u.seen, w.LocalAddr().Network()+" "+q.Name)
		u.mu.Unlock()
		resp := new(mdns.Msg).SetReply(req)
		resp.RecursionAvailable = true
		if ip == "" {
			resp.Rcode = mdns.RcodeServerFailure
		} else if q.Qtype == mdns.TypeA {
			rr, _ := mdns.NewRR(q.Name + " 60 IN A " + ip)
			resp.Answer = append(resp.Answer, rr)
		}
		_ = w.WriteMsg(resp)
	})
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return u
}

func (u *upstream) queries() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.seen)
}

// deadAddr is a 127.0.0.1 UDP port nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// silentAddr is a 127.0.0.1 UDP socket that reads and never answers.
func silentAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func TestForwarding(t *testing.T) {
	up := startUpstream(t, "192.0.2.7")
	s := New([]string{up.addr}, nil)
	s.Set(map[string]netip.Addr{"web": netip.MustParseAddr("172.16.0.2")})
	ts := start(t, s)

	for _, network := range []string{"udp", "tcp"} {
		resp := query(t, network, ts.udp, "Example.COM.", mdns.TypeA)
		if resp.Rcode != mdns.RcodeSuccess || !slices.Equal(answerIPs(resp), []string{"192.0.2.7"}) {
			t.Fatalf("%s forwarded answer = %v", network, resp)
		}
		if resp.Authoritative {
			t.Fatalf("%s forwarded answer claims authority", network)
		}
	}
	query(t, "udp", ts.udp, "web.vm.", mdns.TypeA)
	query(t, "udp", ts.udp, "ghost.vm.", mdns.TypeA)
	if got := up.queries(); !slices.Equal(got, []string{"udp Example.COM.", "tcp Example.COM."}) {
		t.Fatalf("upstream saw %v; want the two forwarded queries, over the transport they came in on, and nothing for vm.", got)
	}
}

func TestForwardingFailover(t *testing.T) {
	up := startUpstream(t, "192.0.2.8")
	failing := startUpstream(t, "")
	// A dead upstream and one answering SERVFAIL: the server moves on.
	s := New([]string{deadAddr(t), failing.addr, up.addr}, nil)
	s.timeout = 500 * time.Millisecond
	ts := start(t, s)
	resp := query(t, "udp", ts.udp, "example.org.", mdns.TypeA)
	if got := answerIPs(resp); resp.Rcode != mdns.RcodeSuccess || !slices.Equal(got, []string{"192.0.2.8"}) {
		t.Fatalf("answer = %v, want the working upstream's", resp)
	}
	if len(failing.queries()) != 1 || len(up.queries()) != 1 {
		t.Fatalf("failing upstream saw %v, working one %v", failing.queries(), up.queries())
	}
	// Only a failing upstream: its SERVFAIL is the answer.
	s = New([]string{failing.addr}, nil)
	ts = start(t, s)
	if resp := query(t, "tcp", ts.tcp, "example.org.", mdns.TypeA); resp.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("rcode = %s, want SERVFAIL", mdns.RcodeToString[resp.Rcode])
	}
}

func TestForwardingFailureIsServfail(t *testing.T) {
	s := New([]string{deadAddr(t), silentAddr(t)}, nil)
	s.timeout = 300 * time.Millisecond
	ts := start(t, s)
	begin := time.Now()
	resp := query(t, "udp", ts.udp, "example.net.", mdns.TypeA)
	if resp.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("rcode = %s, want SERVFAIL", mdns.RcodeToString[resp.Rcode])
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Fatalf("SERVFAIL took %s", d)
	}
	// Names under vm. never depend on upstreams.
	if resp := query(t, "udp", ts.udp, "x.vm.", mdns.TypeA); resp.Rcode != mdns.RcodeNameError {
		t.Fatalf("x.vm. = %s", mdns.RcodeToString[resp.Rcode])
	}
}

func TestNoUpstreamsIsServfail(t *testing.T) {
	s := New(nil, nil)
	s.resolvConf = filepath.Join(t.TempDir(), "missing")
	ts := start(t, s)
	if resp := query(t, "udp", ts.udp, "example.net.", mdns.TypeA); resp.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("rcode = %s, want SERVFAIL", mdns.RcodeToString[resp.Rcode])
	}
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	conf := "# test\nsearch example\nnameserver 10.0.0.1\nnameserver 172.16.0.1\nnameserver ::1\noptions ndots:1\n"
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s := New(nil, nil)
	s.resolvConf = path
	self := &net.UDPAddr{IP: net.ParseIP("172.16.0.1"), Port: 53}
	if got := s.upstreamsFor(self); !slices.Equal(got, []string{"10.0.0.1:53", "[::1]:53"}) {
		t.Fatalf("upstreams = %v", got)
	}
	// Listening on every address: a loopback upstream on the same port is us.
	wildcard := &net.UDPAddr{IP: net.IPv4zero, Port: 53}
	if got := s.upstreamsFor(wildcard); !slices.Equal(got, []string{"10.0.0.1:53", "172.16.0.1:53"}) {
		t.Fatalf("upstreams when listening on 0.0.0.0 = %v", got)
	}
	// Given upstreams win over resolv.conf, and a bare host means port 53.
	s = New([]string{"192.0.2.1", "192.0.2.2:5353", "[2001:db8::1]"}, nil)
	s.resolvConf = path
	if got := s.upstreamsFor(self); !slices.Equal(got, []string{"192.0.2.1:53", "192.0.2.2:5353", "[2001:db8::1]:53"}) {
		t.Fatalf("given upstreams = %v", got)
	}
}

func TestListenErrors(t *testing.T) {
	// A port already taken fails at once rather than serving nothing.
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, addr := range []string{busy.LocalAddr().String(), "127.0.0.1", "256.1.1.1:53"} {
		done := make(chan error, 1)
		go func() { done <- New(nil, nil).ListenAndServe(context.Background(), addr) }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("ListenAndServe(%s) = nil", addr)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("ListenAndServe(%s) did not fail promptly", addr)
		}
	}
	// The TCP side taken: also an error, and the UDP socket is released.
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	addr := tl.Addr().String()
	if err := New(nil, nil).ListenAndServe(context.Background(), addr); err == nil || !strings.Contains(err.Error(), "tcp") {
		t.Fatalf("ListenAndServe with tcp taken = %v", err)
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("udp port not released after a failed start: %v", err)
	}
	pc.Close()
}
