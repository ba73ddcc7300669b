package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/guest"
)

func (b *boot) writeFiles() error {
	if err := checkConfig(b.cfg); err != nil {
		return err
	}
	root, err := os.OpenRoot(newRoot)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := writeGuestFiles(root, b.cfg); err != nil {
		return err
	}
	if b.cfg.Image != nil {
		// /run is the tmpfs the new root gets: the exec helper and the
		// embedded SSH server read the image's defaults here.
		data, err := json.Marshal(b.cfg.Image)
		if err == nil {
			err = os.MkdirAll(filepath.Dir(guest.ImageConfigPath), 0o755)
		}
		if err == nil {
			err = os.WriteFile(guest.ImageConfigPath, data, 0o644)
		}
		if err != nil {
			return fmt.Errorf("writing the image config: %w", err)
		}
	}
	if err := installExec(root); err != nil {
		// SSH commands still run, only without the group signals.
		b.log.Printf("installing the exec helper: %v", err)
	}
	if err := unix.Sethostname([]byte(b.cfg.Hostname)); err != nil {
		return fmt.Errorf("setting the hostname: %w", err)
	}
	return nil
}

// checkConfig refuses config values that would break the files they go
// into. The host validates them too; this keeps a bad disk from writing a
// bad /etc.
func checkConfig(cfg guest.Config) error {
	oneWord := func(what, v string) error {
		if v == "" || strings.ContainsAny(v, " \t\r\n#\x00") {
			return fmt.Errorf("config: %s %q is empty or has whitespace", what, v)
		}
		return nil
	}
	if err := oneWord("hostname", cfg.Hostname); err != nil {
		return err
	}
	if cfg.SearchDomain != "" {
		if err := oneWord("search domain", cfg.SearchDomain); err != nil {
			return err
		}
	}
	for _, ns := range cfg.DNS {
		if _, err := netip.ParseAddr(ns); err != nil {
			return fmt.Errorf("config: DNS server: %w", err)
		}
	}
	for name, ip := range cfg.Hosts {
		if err := oneWord("hosts name", name); err != nil {
			return err
		}
		if _, err := netip.ParseAddr(ip); err != nil {
			return fmt.Errorf("config: hosts entry %s: %w", name, err)
		}
	}
	for _, k := range append([]string{cfg.HostKeyPub}, cfg.AuthorizedKeys...) {
		if strings.ContainsAny(strings.TrimRight(k, "\n"), "\r\n") {
			return fmt.Errorf("config: SSH public key %.20q... spans several lines", k)
		}
	}
	if cfg.HostKey == "" || cfg.HostKeyPub == "" {
		return errors.New("config: no SSH host key")
	}
	return nil
}

// renderHosts is /etc/hosts: localhost, the VM's own name on 127.0.1.1 (as
// Debian does), then cfg.Hosts sorted by name.
func renderHosts(cfg guest.Config) string {
	var s strings.Builder
	s.WriteString("# written by banger-agent at every boot\n")
	s.WriteString("127.0.0.1\tlocalhost\n")
	fmt.Fprintf(&s, "127.0.1.1\t%s\n", cfg.Hostname)
	s.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	names := make([]string, 0, len(cfg.Hosts))
	for n := range cfg.Hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&s, "%s\t%s\n", cfg.Hosts[n], n)
	}
	return s.String()
}

// renderResolv is /etc/resolv.conf.
func renderResolv(cfg guest.Config) string {
	var s strings.Builder
	s.WriteString("# written by banger-agent at every boot\n")
	for _, ns := range cfg.DNS {
		fmt.Fprintf(&s, "nameserver %s\n", ns)
	}
	if cfg.SearchDomain != "" {
		fmt.Fprintf(&s, "search %s\n", cfg.SearchDomain)
	}
	return s.String()
}

// writeGuestFiles writes the VM's identity into the root. Through
// os.Root, no symlink in the image can send a write outside it; a file
// that is a symlink (resolv.conf often is) is replaced by a plain file.
func writeGuestFiles(root *os.Root, cfg guest.Config) error {
	authorized := strings.Join(trimKeys(cfg.AuthorizedKeys), "\n")
	if authorized != "" {
		authorized += "\n"
	}
	files := []struct {
		name string
		data string
		perm fs.FileMode
	}{
		{"etc/hostname", cfg.Hostname + "\n", 0o644},
		{"etc/hosts", renderHosts(cfg), 0o644},
		{"etc/resolv.conf", renderResolv(cfg), 0o644},
		{"root/.ssh/authorized_keys", authorized, 0o600},
		{"etc/ssh/ssh_host_ed25519_key", withNewline(cfg.HostKey), 0o600},
		{"etc/ssh/ssh_host_ed25519_key.pub", withNewline(cfg.HostKeyPub), 0o644},
	}
	for _, d := range []struct {
		name string
		perm fs.FileMode
	}{{"etc", 0o755}, {"root", 0o700}, {"root/.ssh", 0o700}, {"etc/ssh", 0o755}} {
		if err := root.MkdirAll(d.name, d.perm); err != nil {
			return fmt.Errorf("creating /%s: %w", d.name, err)
		}
	}
	if err := root.Chmod("root/.ssh", 0o700); err != nil {
		return fmt.Errorf("securing /root/.ssh: %w", err)
	}
	if err := removeOtherHostKeys(root); err != nil {
		return err
	}
	for _, f := range files {
		if err := replaceFile(root, f.name, f.data, f.perm); err != nil {
			return err
		}
	}
	// Where the image's sshd reads drop-ins, say which host key to use so
	// it does not complain about the ones removed.
	if st, err := root.Stat("etc/ssh/sshd_config.d"); err == nil && st.IsDir() {
		if err := replaceFile(root, "etc/ssh/sshd_config.d/banger.conf", "HostKey /etc/ssh/ssh_host_ed25519_key\n", 0o644); err != nil {
			return err
		}
	}
	return nil
}

// removeOtherHostKeys removes every /etc/ssh/ssh_host_*_key (and .pub)
// but ours, so sshd offers only the key banger pinned.
func removeOtherHostKeys(root *os.Root) error {
	dir, err := root.Open("etc/ssh")
	if err != nil {
		return err
	}
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return fmt.Errorf("listing /etc/ssh: %w", err)
	}
	for _, n := range names {
		base := strings.TrimSuffix(n, ".pub")
		if strings.HasPrefix(base, "ssh_host_") && strings.HasSuffix(base, "_key") && base != "ssh_host_ed25519_key" {
			if err := root.Remove(path.Join("etc/ssh", n)); err != nil {
				return fmt.Errorf("removing /etc/ssh/%s: %w", n, err)
			}
		}
	}
	return nil
}

// replaceFile writes name afresh: whatever was there (a file, a symlink)
// is removed first, so the new file has exactly perm and data.
func replaceFile(root *os.Root, name, data string, perm fs.FileMode) error {
	if err := root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("replacing /%s: %w", name, err)
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("writing /%s: %w", name, err)
	}
	_, err = f.WriteString(data)
	if err == nil {
		err = f.Chmod(perm) // the umask may have taken bits off
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing /%s: %w", name, err)
	}
	return nil
}

func trimKeys(keys []string) []string {
	var out []string
	for _, k := range keys {
		if k = strings.TrimSpace(k); k != "" {
			out = append(out, k)
		}
	}
	return out
}

func withNewline(s string) string {
	if s != "" && !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return s
}
