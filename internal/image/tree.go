package image

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/banger-dev/banger/internal/rootfs"
)

// The tree BuildDebian works on is a guest's root: absolute symlinks in it
// point into the guest. Every edit to it goes through a rootfs.Tree, which
// resolves names inside the tree and replaces the final component instead
// of opening through it.

// kernelVersion finds the one kernel in the tree's /boot that has modules.
func kernelVersion(t *rootfs.Tree) (string, error) {
	boot, err := t.ReadDir("boot")
	if err != nil {
		return "", fmt.Errorf("finding the kernel: %w", err)
	}
	var found []string
	for _, e := range boot {
		kver, ok := strings.CutPrefix(e.Name(), "vmlinuz-")
		if !ok {
			continue
		}
		if fi, err := t.Lstat(modulesRoot(t) + "/" + kver); err == nil && fi.IsDir() {
			found = append(found, kver)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("finding the kernel: no /boot/vmlinuz-* with modules in the tree (is linux-image-cloud-amd64 installed?)")
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("finding the kernel: several kernels in the tree: %s", strings.Join(found, ", "))
}

// modulesRoot is the tree's /lib/modules (/usr/lib/modules when /usr is
// merged, as from bookworm on).
func modulesRoot(t *rootfs.Tree) string {
	if fi, err := t.Lstat("usr/lib/modules"); err == nil && fi.IsDir() {
		return "usr/lib/modules"
	}
	return "lib/modules"
}

// isBzImage reports whether b starts like an x86 bzImage: the setup
// header's "HdrS" magic at 0x202.
func isBzImage(b []byte) bool {
	return len(b) >= 0x206 && string(b[0x202:0x206]) == "HdrS"
}

// takeKernel moves /boot/vmlinuz-<kver> to dst and drops the other boot
// files the guest never uses (its initrd, the /vmlinuz and /initrd.img
// links). /boot/config-* and System.map stay: small, and read by tools.
func takeKernel(t *rootfs.Tree, kver, dst string) error {
	src := "boot/vmlinuz-" + kver
	f, err := t.Open(src)
	if err != nil {
		return fmt.Errorf("reading the kernel: %w", err)
	}
	head := make([]byte, 0x206)
	_, err = io.ReadFull(f, head)
	f.Close()
	if err != nil || !isBzImage(head) {
		return fmt.Errorf("kernel /%s is not a bzImage", src)
	}
	if err := t.MoveOut(src, dst); err != nil {
		return fmt.Errorf("taking the kernel: %w", err)
	}
	for _, p := range []string{"boot/initrd.img-" + kver, "vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"} {
		if err := t.RemoveAll(p); err != nil {
			return fmt.Errorf("removing /%s: %w", p, err)
		}
	}
	return nil
}

// unitsToMask make no sense in a microVM or slow its boot; each is masked
// only when the tree has it.
var unitsToMask = []string{
	"apt-daily.service", "apt-daily.timer", // no unattended apt in a sandbox
	"apt-daily-upgrade.service", "apt-daily-upgrade.timer",
	"dpkg-db-backup.service", "dpkg-db-backup.timer",
	"e2scrub_all.service", "e2scrub_all.timer", "e2scrub_reap.service", // no LVM
	"fstrim.service", "fstrim.timer", // read-only base; the host owns the disks
	"getty@tty1.service", "getty-static.service", // no VGA console; serial-getty@ttyS0 stays
	"systemd-networkd-wait-online.service", // the agent configures the network before init
	"systemd-pstore.service",               // no pstore backend in a microVM
}

// prepareTree turns a fresh Debian bootstrap into a banger base image:
//   - /etc/fstab holds no root entry (the initramfs mounts the overlay
//     root; the agent mounts /work); /etc/hostname is gone and
//     /etc/resolv.conf empty (the agent writes both; mmdebstrap copied the
//     build host's); /etc/hosts has the localhost lines;
//   - no SSH host keys (banger gives each VM its own); sshd takes root
//     logins by key only, said explicitly in sshd_config.d; its PAM
//     session shows /etc/motd but does not regenerate the dynamic part
//     (see quietMotd);
//   - /etc/machine-id is empty: systemd then generates an ID at each
//     VM's first boot and, the overlay root being writable, keeps it. Every
//     VM gets its own ID, and none is in "first boot" (which "uninitialized"
//     would mean: ConditionFirstBoot units, systemd-firstboot, presets);
//   - units in unitsToMask are masked, ssh.service is enabled, the default
//     target is multi-user.target;
//   - leftovers of the build (/tmp) are removed.
func prepareTree(t *rootfs.Tree) error {
	files := []struct {
		path, body string
	}{
		{"etc/fstab", "# banger: no entries. The initramfs mounts / (an overlay on the\n# read-only base image); the agent mounts /work.\n"},
		{"etc/resolv.conf", ""},
		{"etc/machine-id", ""},
	}
	for _, f := range files {
		if err := t.WriteFile(f.path, []byte(f.body), 0o644); err != nil {
			return fmt.Errorf("writing /%s: %w", f.path, err)
		}
	}
	if _, err := t.Lstat("etc/hosts"); errors.Is(err, fs.ErrNotExist) {
		if err := t.WriteFile("etc/hosts", []byte(localHosts), 0o644); err != nil {
			return fmt.Errorf("writing /etc/hosts: %w", err)
		}
	}
	if err := t.RemoveAll("etc/hostname"); err != nil {
		return fmt.Errorf("removing /etc/hostname: %w", err)
	}
	if err := prepareSSH(t); err != nil {
		return err
	}
	if err := prepareSystemd(t); err != nil {
		return err
	}
	entries, err := t.ReadDir("tmp")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cleaning /tmp: %w", err)
	}
	for _, e := range entries {
		if err := t.RemoveAll("tmp/" + e.Name()); err != nil {
			return fmt.Errorf("cleaning /tmp: %w", err)
		}
	}
	return nil
}

// sshdDropIn is banger's sshd configuration. prohibit-password is
// Debian's compiled-in default already (sshd -T shows without-password);
// saying it keeps it true if a package changes sshd_config.
const sshdDropIn = "# banger: root logs in with keys only; host keys are per VM.\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"

// localHosts is /etc/hosts with only the localhost lines; the agent adds
// the VM's own at boot.
const localHosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"

// removeHostKeys removes every /etc/ssh/ssh_host_* (banger gives each VM
// its own key).
func removeHostKeys(t *rootfs.Tree) error {
	entries, err := t.ReadDir("etc/ssh")
	if err != nil {
		return fmt.Errorf("removing ssh host keys: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "ssh_host_") {
			if err := t.RemoveAll("etc/ssh/" + e.Name()); err != nil {
				return fmt.Errorf("removing ssh host keys: %w", err)
			}
		}
	}
	return nil
}

func prepareSSH(t *rootfs.Tree) error {
	if err := removeHostKeys(t); err != nil {
		return err
	}
	if err := quietMotd(t); err != nil {
		return err
	}
	cfg, err := t.ReadFile("etc/ssh/sshd_config")
	if err != nil {
		return fmt.Errorf("reading sshd_config: %w", err)
	}
	if hasSSHDInclude(cfg) {
		return writeTreeFile(t, "etc/ssh/sshd_config.d/banger.conf", []byte(sshdDropIn))
	}
	// sshd takes the first value it reads for each keyword: go first.
	return writeTreeFile(t, "etc/ssh/sshd_config", append([]byte(sshdDropIn), cfg...))
}

// sshdPAM is sshd's PAM configuration.
const sshdPAM = "etc/pam.d/sshd"

// quietMotd comments out the pam_motd line of sshd's PAM session that
// writes /run/motd.dynamic: it runs /etc/update-motd.d through run-parts
// at every SSH session, a command's too, and that cost 0.3 s of each
// `vm ssh VM -- CMD` under TCG (measured here). The static /etc/motd
// still shows at a login.
func quietMotd(t *rootfs.Tree) error {
	b, err := t.ReadFile(sshdPAM)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading /%s: %w", sshdPAM, err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	changed := false
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) > 0 && !strings.HasPrefix(f[0], "#") && slices.Contains(f, "pam_motd.so") && slices.Contains(f, "motd=/run/motd.dynamic") {
			lines[i], changed = "# banger: no motd regenerated at each session: "+l, true
		}
	}
	if !changed {
		return nil
	}
	return writeTreeFile(t, sshdPAM, []byte(strings.Join(lines, "")))
}

func writeTreeFile(t *rootfs.Tree, name string, data []byte) error {
	if err := t.WriteFile(name, data, 0o644); err != nil {
		return fmt.Errorf("writing /%s: %w", name, err)
	}
	return nil
}

func hasSSHDInclude(cfg []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(cfg))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && strings.EqualFold(f[0], "Include") && strings.HasPrefix(f[1], "/etc/ssh/sshd_config.d/") {
			return true
		}
	}
	return false
}

// unitDirs are where the tree's unit files live, vendor first.
var unitDirs = []string{"usr/lib/systemd/system", "lib/systemd/system", "etc/systemd/system"}

// hasUnit reports whether the tree has unit, or for an instance
// (getty@tty1.service) its template (getty@.service).
func hasUnit(t *rootfs.Tree, unit string) bool {
	names := []string{unit}
	if at := strings.Index(unit, "@"); at >= 0 {
		if dot := strings.LastIndex(unit, "."); dot > at+1 {
			names = append(names, unit[:at+1]+unit[dot:])
		}
	}
	for _, d := range unitDirs {
		for _, n := range names {
			if _, err := t.Lstat(d + "/" + n); err == nil {
				return true
			}
		}
	}
	return false
}

func prepareSystemd(t *rootfs.Tree) error {
	const etc = "etc/systemd/system"
	link := func(target, name string) error {
		if err := t.Symlink(target, name); err != nil {
			return fmt.Errorf("configuring systemd: linking /%s: %w", name, err)
		}
		return nil
	}
	entries, err := t.ReadDir(etc)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("configuring systemd: %w", err)
	}
	var wants []string
	for _, e := range entries {
		if e.IsDir() && strings.HasSuffix(e.Name(), ".wants") {
			wants = append(wants, etc+"/"+e.Name())
		}
	}
	for _, unit := range unitsToMask {
		if !hasUnit(t, unit) {
			continue
		}
		for _, w := range wants {
			if err := t.RemoveAll(w + "/" + unit); err != nil {
				return fmt.Errorf("configuring systemd: %w", err)
			}
		}
		if err := link("/dev/null", etc+"/"+unit); err != nil {
			return err
		}
	}
	if !hasUnit(t, "multi-user.target") {
		return errors.New("configuring systemd: the tree has no multi-user.target (is systemd-sysv installed?)")
	}
	if err := link("/lib/systemd/system/multi-user.target", etc+"/default.target"); err != nil {
		return err
	}
	if !hasUnit(t, "ssh.service") {
		return errors.New("configuring systemd: the tree has no ssh.service (is openssh-server installed?)")
	}
	// What `systemctl enable ssh` does: WantedBy=multi-user.target and
	// Alias=sshd.service.
	if err := link("/lib/systemd/system/ssh.service", etc+"/multi-user.target.wants/ssh.service"); err != nil {
		return err
	}
	return link("/lib/systemd/system/ssh.service", etc+"/sshd.service")
}

// replaceSymlink replaces path, in banger's own work directory (never an
// image tree), with a symlink to target.
func replaceSymlink(target, path string) error {
	if err := removeIfExists(path); err != nil {
		return err
	}
	if err := os.Symlink(target, path); err != nil {
		return fmt.Errorf("linking %s: %w", path, err)
	}
	return nil
}

// removeIfExists removes a file or symlink (not a directory tree).
func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// removeAllUnmounted removes dir like os.RemoveAll, but first unmounts
// anything mounted under it and refuses if something stays mounted:
// os.RemoveAll would walk into a leftover bind mount of /sys or /dev and
// delete the host's files.
func removeAllUnmounted(dir string) error {
	resolved, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	mounts, err := mountsUnder(resolved)
	if err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	if len(mounts) > 0 {
		for _, m := range mounts { // deepest first
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
		if mounts, err = mountsUnder(resolved); err != nil {
			return fmt.Errorf("removing %s: %w", dir, err)
		}
		if len(mounts) > 0 {
			return fmt.Errorf("refusing to remove %s: %s is still mounted", dir, mounts[0])
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	return nil
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mount table: %w", err)
	}
	return parseMountsUnder(data, dir), nil
}

func parseMountsUnder(mountinfo []byte, dir string) []string {
	var out []string
	for _, line := range strings.Split(string(mountinfo), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if mp == dir || strings.HasPrefix(mp, strings.TrimSuffix(dir, "/")+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return true
}
