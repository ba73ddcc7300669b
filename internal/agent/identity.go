package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/guest"
	"github.com/banger-dev/banger/internal/proc"
)

// A guest started from saved memory (a restore, a fork) is whoever was
// saved: same hostname, address, MAC, host key, machine-id and RNG state.
// identify makes it the VM the host says it now is, before the host
// counts it ready. The steps run in this order so that nothing after the
// reseed uses the shared RNG state, and SSH answers with the new key only
// once the files are in place.

// minEntropy is the fewest host bytes an identity must bring: the
// kernel's CRNG is keyed with 256 bits.
const minEntropy = 32

// hostKeyGen counts identity changes; the embedded SSH server reloads its
// host key when it moves.
var hostKeyGen atomic.Uint64

// identify applies id to the running guest (see guest.Identity).
func identify(log *logger, id guest.Identity) error {
	cfg := id.Config
	start := time.Now()
	if err := checkConfig(cfg); err != nil {
		return err
	}
	if !validMachineID(id.MachineID) {
		return fmt.Errorf("identity: machine-id %q is not 32 lowercase hex digits", id.MachineID)
	}
	if len(id.Entropy) < minEntropy {
		return fmt.Errorf("identity: %d bytes of entropy, fewer than %d", len(id.Entropy), minEntropy)
	}
	if err := reseedRNG("/dev/random", id.Entropy); err != nil {
		return err
	}
	root, err := os.OpenRoot("/")
	if err != nil {
		return err
	}
	defer root.Close()
	if err := writeGuestFiles(root, cfg); err != nil {
		return err
	}
	if err := writeMachineID(root, id.MachineID); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return fmt.Errorf("setting the hostname: %w", err)
	}
	if err := readdress(log, cfg); err != nil {
		return err
	}
	hostKeyGen.Add(1)
	var old map[uint32]bool // the listener a reload replaces
	if sshdKeepsKeys() {
		old = sshListeners()
		reloadSSHD(log, "/proc")
	}
	if err := awaitSSH(old, sshWait); err != nil {
		return err
	}
	log.Printf("identity: now %s (%s) in %v", cfg.Hostname, orNone(cfg.Address), time.Since(start).Round(time.Millisecond))
	return nil
}

func validMachineID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// writeMachineID writes /etc/machine-id in place: systemd may have bound
// a file of /run over it, which cannot be replaced but can be written.
func writeMachineID(root *os.Root, id string) error {
	f, err := root.OpenFile("etc/machine-id", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o444)
	if err != nil {
		return fmt.Errorf("writing /etc/machine-id: %w", err)
	}
	_, err = f.WriteString(id + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing /etc/machine-id: %w", err)
	}
	return nil
}

// reseedRNG credits entropy to the kernel's pool (RNDADDENTROPY) and makes
// the CRNG rekey from it at once (RNDRESEEDCRNG), so that two guests of one
// memory image draw different numbers from here on. (vmgenid would tell the
// kernel itself, but microvm's ACPI tables do not carry it.)
func reseedRNG(dev string, entropy []byte) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dev, err)
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+len(entropy))
	binary.NativeEndian.PutUint32(info[0:], uint32(8*len(entropy)))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(entropy)))
	copy(info[8:], entropy)
	if err := ioctl(f, unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))); err != nil {
		return fmt.Errorf("adding entropy: %w", err)
	}
	if err := ioctl(f, unix.RNDRESEEDCRNG, 0); err != nil {
		return fmt.Errorf("reseeding the RNG: %w", err)
	}
	return nil
}

func ioctl(f *os.File, req uint, arg uintptr) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, uintptr(req), arg)
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// readdress moves the guest's interface to the config's MAC and address.
// When either changed (a fork), the old addresses go, and the TCP
// connections from them, whose peers will never answer the new one; the
// link goes down while its MAC changes and comes back up, which makes
// the kernel derive a new IPv6 link-local address from the new MAC and,
// with arp_notify set, send a gratuitous ARP so the bridge and the host
// learn where the address is now. The default route goes back on last.
func readdress(log *logger, cfg guest.Config) error {
	if cfg.Address == "" {
		return nil
	}
	addr, err := netlink.ParseAddr(cfg.Address)
	if err != nil {
		return fmt.Errorf("config address: %w", err)
	}
	var mac net.HardwareAddr
	if cfg.MAC != "" {
		if mac, err = net.ParseMAC(cfg.MAC); err != nil {
			return fmt.Errorf("config MAC: %w", err)
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("listing network interfaces: %w", err)
	}
	link, err := pickLink(links, cfg.MAC)
	if err != nil {
		return err
	}
	name := link.Attrs().Name
	old, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing the addresses of %s: %w", name, err)
	}
	var stale []netlink.Addr
	var gone []net.IP
	for _, a := range old {
		if !a.IP.Equal(addr.IP) {
			stale, gone = append(stale, a), append(gone, a.IP)
		}
	}
	newMAC := mac != nil && !strings.EqualFold(link.Attrs().HardwareAddr.String(), mac.String())
	if !newMAC && len(stale) == 0 {
		return nil // a restore of this very VM: nothing moved
	}
	notify := filepath.Join("/proc/sys/net/ipv4/conf", name, "arp_notify")
	if err := os.WriteFile(notify, []byte("1"), 0o644); err != nil {
		log.Printf("identity: %v; no gratuitous ARP", err)
	}
	if err := netlink.LinkSetDown(link); err != nil {
		return fmt.Errorf("taking %s down: %w", name, err)
	}
	for _, a := range stale {
		if err := netlink.AddrDel(link, &a); err != nil {
			return fmt.Errorf("removing %s from %s: %w", a.IPNet, name, err)
		}
	}
	dropConnections(log, gone)
	if newMAC {
		if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
			return fmt.Errorf("setting the MAC of %s to %s: %w", name, mac, err)
		}
	}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("adding %s to %s: %w", cfg.Address, name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing %s up: %w", name, err)
	}
	return defaultRoute(link, cfg.Gateway)
}

// dropConnections destroys the TCP sockets bound to addresses the guest
// no longer has. A kernel without socket destroy (INET_DIAG_DESTROY)
// leaves them to time out.
func dropConnections(log *logger, gone []net.IP) {
	if len(gone) == 0 {
		return
	}
	socks, err := netlink.SocketDiagTCP(unix.AF_INET)
	if err != nil {
		log.Printf("identity: listing TCP sockets: %v", err)
		return
	}
	n := 0
	for _, s := range socks {
		local := s.ID.Source
		if !slices.ContainsFunc(gone, local.Equal) || s.ID.Destination.IsUnspecified() {
			continue
		}
		err := netlink.SocketDestroy(
			&net.TCPAddr{IP: local, Port: int(s.ID.SourcePort)},
			&net.TCPAddr{IP: s.ID.Destination, Port: int(s.ID.DestinationPort)})
		if err != nil {
			log.Printf("identity: dropping a connection from %s: %v", local, err)
			return
		}
		n++
	}
	if n > 0 {
		log.Printf("identity: dropped %d connections from old addresses", n)
	}
}

// sshWait bounds the wait for SSH to listen after an identity change.
const sshWait = 5 * time.Second

// awaitSSH waits until a socket other than those in old listens on TCP
// port 22: the host counts the guest ready on the agent's word, with no
// SSH connection of its own, which would cost the guest an sshd process.
func awaitSSH(old map[uint32]bool, wait time.Duration) error {
	for deadline := time.Now().Add(wait); ; time.Sleep(20 * time.Millisecond) {
		for ino := range sshListeners() {
			if !old[ino] {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("identity: nothing listens on port 22 after %s", wait)
		}
	}
}

// sshListeners are the inodes of the sockets listening on TCP port 22.
func sshListeners() map[uint32]bool {
	out := map[uint32]bool{}
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := netlink.SocketDiagTCP(fam)
		if err != nil {
			continue
		}
		for _, s := range socks {
			if s.State == netlink.TCP_LISTEN && s.ID.SourcePort == 22 {
				out[s.INode] = true
			}
		}
	}
	return out
}

// sshdSession are where OpenSSH 9.8 and later keep sshd-session.
var sshdSession = []string{"/usr/lib/openssh/sshd-session", "/usr/libexec/openssh/sshd-session", "/usr/libexec/sshd-session"}

// sshdKeepsKeys says whether the image's sshd holds its host keys in the
// listener. Before 9.8 OpenSSH re-executes itself for every connection,
// and that process reads the key files afresh: no reload, which costs a
// re-exec of sshd (300 ms under TCG) and a moment with port 22 closed.
// From 9.8 the listener loads the keys and hands them to sshd-session.
func sshdKeepsKeys() bool {
	for _, p := range sshdSession {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// reloadSSHD sends SIGHUP to each listening OpenSSH sshd (one whose
// parent is not an sshd): it re-executes itself and reads the new host
// key. Sessions already open are its children and go on.
func reloadSSHD(log *logger, procDir string) {
	for _, pid := range sshdListeners(procDir) {
		if err := unix.Kill(pid, unix.SIGHUP); err != nil && !errors.Is(err, unix.ESRCH) {
			log.Printf("identity: reloading sshd %d: %v", pid, err)
		}
	}
}

// sshdListeners are the PIDs under procDir named sshd whose parent is
// not, and that serve more than one connection (no -i).
func sshdListeners(procDir string) []int {
	entries, _ := os.ReadDir(procDir)
	comm := func(pid string) (string, int) {
		b, err := os.ReadFile(filepath.Join(procDir, pid, "stat"))
		if err != nil {
			return "", 0
		}
		name, f, ok := proc.ParseStat(b)
		if !ok || len(f) < 2 {
			return "", 0
		}
		ppid, _ := strconv.Atoi(f[1]) // after the state
		return name, ppid
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		name, ppid := comm(e.Name())
		if name != "sshd" {
			continue
		}
		if parent, _ := comm(strconv.Itoa(ppid)); parent == "sshd" {
			continue
		}
		if slices.Contains(proc.CmdlineIn(procDir, pid), "-i") {
			// Started by inetd or a systemd socket for one connection: it
			// read the keys itself, and a SIGHUP would end its session.
			continue
		}
		out = append(out, pid)
	}
	return out
}
