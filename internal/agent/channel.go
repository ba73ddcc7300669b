package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/archive"
	"github.com/banger-dev/banger/internal/guest"
	"github.com/banger-dev/banger/internal/tunnel"
)

// Serve runs the control-channel server (banger-agent serve) until ctx is
// done. It serves the virtio-serial port named guest.PortName (QEMU) or,
// when the VM has a virtio vsock device instead (Firecracker), listens on
// vsock port guest.VsockPort, one session per connection. In a
// maintenance boot it is ready at once and serves the root export instead
// of SSH.
func Serve(ctx context.Context, version string, maintenance bool) error {
	log := newLogger(os.Stderr)
	s := &server{
		log:         log,
		version:     version,
		heartbeat:   heartbeatEvery,
		awaitReady:  func(ctx context.Context) { awaitGuestInit(ctx); warmSockDiag() },
		shutdown:    func() { shutdownGuest(log) },
		adjustClock: adjustClock,
	}
	if !maintenance {
		s.identify = func(id guest.Identity) error { return identify(log, id) }
	}
	if maintenance {
		s.awaitReady = nil
		go func() { log.Printf("root export: %v", serveExport(ctx, log, newRoot)) }()
	} else if findInit("") == "" {
		// Nothing in the image starts an sshd: serve SSH here.
		go func() {
			for ctx.Err() == nil {
				if err := serveSSH(ctx, log); err != nil && ctx.Err() == nil {
					log.Printf("ssh server: %v; restarting it", err)
					time.Sleep(time.Second)
				}
			}
		}()
	}
	warned := false
	for start := time.Now(); ctx.Err() == nil; time.Sleep(100 * time.Millisecond) {
		if port := findPort("/sys/class/virtio-ports", guest.PortName); port != "" {
			log.Printf("control channel on %s", port)
			if tport := findPort("/sys/class/virtio-ports", guest.TunnelPortName); tport != "" {
				go serveTunnelPort(ctx, log, tport)
			}
			return servePort(ctx, s, port)
		}
		if hasVsock("/sys/bus/virtio/drivers") {
			log.Printf("control channel on vsock port %d", guest.VsockPort)
			go func() {
				err := serveVsock(ctx, log, guest.TunnelVsockPort, func(c *os.File) error {
					return tunnel.Serve(ctx, c, 0, tunnel.DialLoopback)
				})
				log.Printf("tunnel on vsock port %d: %v", guest.TunnelVsockPort, err)
			}()
			return serveVsock(ctx, log, guest.VsockPort, func(c *os.File) error { return s.run(ctx, c) })
		}
		if !warned && time.Since(start) > 10*time.Second {
			log.Printf("no virtio-serial port %s and no vsock device yet; still looking", guest.PortName)
			warned = true
		}
	}
	return ctx.Err()
}

// serveExport serves a tar of the tree at root on guest.ExportPort of the
// loopback, one whole stream per connection, ending with the
// guest.ExportEnd entry: owners, modes, xattrs, devices, hard links and
// symlinks as they are. The tunnel is the only way there from the host.
// It returns when ctx ends or the listener fails.
func serveExport(ctx context.Context, log *logger, root string) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(guest.ExportPort)))
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { l.Close() })
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			start := time.Now()
			st, err := archive.PackWith(ctx, c, root, ".", archive.PackOptions{Xattrs: true, End: guest.ExportEnd})
			if err != nil {
				log.Printf("root export: %v", err)
				return
			}
			log.Printf("root export: %d entries, %d bytes in %v (skipped %d sockets)", st.Entries, st.Bytes, time.Since(start).Round(time.Millisecond), len(st.Skipped))
		}()
	}
}

// findPort returns /dev/<port> for the virtio-serial port named name.
func findPort(classDir, name string) string {
	names, _ := filepath.Glob(filepath.Join(classDir, "*", "name"))
	for _, n := range names {
		if b, err := os.ReadFile(n); err == nil && strings.TrimSpace(string(b)) == name {
			return "/dev/" + filepath.Base(filepath.Dir(n))
		}
	}
	return ""
}

// hasVsock reports whether a virtio vsock device is bound to its driver.
func hasVsock(virtioDrivers string) bool {
	devs, _ := filepath.Glob(filepath.Join(virtioDrivers, "vmw_vsock_virtio_transport", "virtio*"))
	return len(devs) > 0
}

// servePort serves a virtio-serial port. The port reads EOF while the host
// side is closed and writes block until it opens, so one session runs for
// the life of the guest, across host reconnections.
func servePort(ctx context.Context, s *server, dev string) error {
	// How soon a host that connects is heard: a restored guest's first
	// word from the host (its identity) waits up to this long.
	s.eofRetry = 50 * time.Millisecond
	for ctx.Err() == nil {
		// A blocking descriptor: reads and writes wait in the kernel.
		fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err != nil {
			s.log.Printf("opening %s: %v", dev, err)
			time.Sleep(time.Second)
			continue
		}
		f := os.NewFile(uintptr(fd), dev)
		err = s.run(ctx, f)
		f.Close()
		if err != nil {
			s.log.Printf("control channel on %s: %v", dev, err)
			time.Sleep(time.Second)
		}
	}
	return ctx.Err()
}

// serveTunnelPort serves the tunnel on a virtio-serial port for the life
// of the guest: one session per host connection.
func serveTunnelPort(ctx context.Context, log *logger, dev string) {
	log.Printf("tunnel on %s", dev)
	for ctx.Err() == nil {
		fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err != nil {
			log.Printf("opening %s: %v", dev, err)
			time.Sleep(time.Second)
			continue
		}
		f := os.NewFile(uintptr(fd), dev)
		err = tunnel.Serve(ctx, f, 200*time.Millisecond, tunnel.DialLoopback)
		f.Close()
		if err != nil && ctx.Err() == nil {
			log.Printf("tunnel on %s: %v", dev, err)
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// serveVsock listens on a vsock port and serves each connection with
// handle, one at a time per connection, until ctx ends.
func serveVsock(ctx context.Context, log *logger, port uint32, handle func(*os.File) error) error {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("vsock socket: %w", err)
	}
	ln := os.NewFile(uintptr(fd), "vsock-listener")
	defer ln.Close()
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		return fmt.Errorf("binding vsock port %d: %w", port, err)
	}
	if err := unix.Listen(fd, 4); err != nil {
		return fmt.Errorf("listening on vsock port %d: %w", port, err)
	}
	for ctx.Err() == nil {
		nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
			continue
		}
		if err != nil {
			return fmt.Errorf("accepting on vsock port %d: %w", port, err)
		}
		conn := os.NewFile(uintptr(nfd), "vsock")
		go func() {
			defer conn.Close()
			if err := handle(conn); err != nil && !errors.Is(err, io.EOF) {
				log.Printf("vsock port %d: %v", port, err)
			}
		}()
	}
	return ctx.Err()
}

// warmSockDiag has the kernel load its TCP socket diagnostics (modules
// inet_diag and tcp_diag in Debian's kernel), which identify uses to find
// sshd's listener and to drop stale connections. Loaded before the agent
// is ready, they are in every template saved after that, and a restored
// guest does not run modprobe again: 0.2 s of each instant VM under TCG.
func warmSockDiag() { _ = sshListeners() }

// awaitGuestInit waits (at most 10 s) until PID 1 is no longer this
// program, i.e. the agent has exec'd the image's init. When the image has
// no init, the agent stays PID 1 and is the guest's init: ready at once.
func awaitGuestInit(ctx context.Context) {
	if findInit("") == "" {
		return
	}
	self, err := os.Stat("/proc/self/exe")
	if err != nil {
		return
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(20 * time.Millisecond) {
		if init, err := os.Stat("/proc/1/exe"); err != nil || !os.SameFile(self, init) {
			return
		}
	}
}

// sigRTMinPlus4 is SIGRTMIN+4 as systemd counts it (glibc's SIGRTMIN is
// 34): systemd's request to start poweroff.target.
const sigRTMinPlus4 = syscall.Signal(34 + 4)

// shutdownGuest powers the guest off cleanly: through systemd when it is
// PID 1, else by syncing and powering off directly.
func shutdownGuest(log *logger) {
	comm, _ := os.ReadFile("/proc/1/comm")
	if strings.TrimSpace(string(comm)) == "systemd" {
		err := unix.Kill(1, sigRTMinPlus4)
		if err == nil {
			log.Printf("asked systemd to power off")
			return
		}
		log.Printf("asking systemd to power off: %v; powering off directly", err)
	}
	time.Sleep(200 * time.Millisecond) // let the ack reach the host
	powerOff(log)
}
