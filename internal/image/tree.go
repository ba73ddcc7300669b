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
	"sort"
	"strings"
	"syscall"
)

// The tree BuildDebian works on is a guest's root: absolute symlinks in it
// point into the guest, so nothing here follows a symlink it did not check
// (writes replace the final component instead of opening through it).

// kernelVersion finds the one kernel in root's /boot that has modules.
func kernelVersion(root string) (string, error) {
	kernels, err := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if err != nil {
		return "", fmt.Errorf("finding the kernel: %w", err)
	}
	var found []string
	for _, k := range kernels {
		kver := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
		if fi, err := os.Lstat(filepath.Join(modulesRoot(root), kver)); err == nil && fi.IsDir() {
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
func modulesRoot(root string) string {
	if fi, err := os.Lstat(filepath.Join(root, "usr/lib/modules")); err == nil && fi.IsDir() {
		return filepath.Join(root, "usr/lib/modules")
	}
	return filepath.Join(root, "lib/modules")
}

// isBzImage reports whether b starts like an x86 bzImage: the setup
// header's "HdrS" magic at 0x202.
func isBzImage(b []byte) bool {
	return len(b) >= 0x206 && string(b[0x202:0x206]) == "HdrS"
}

// takeKernel moves /boot/vmlinuz-<kver> to dst and drops the other boot
// files the guest never uses (its initrd, the /vmlinuz and /initrd.img
// links). /boot/config-* and System.map stay: small, and read by tools.
func takeKernel(root, kver, dst string) error {
	src := filepath.Join(root, "boot", "vmlinuz-"+kver)
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("reading the kernel: %w", err)
	}
	head := make([]byte, 0x206)
	_, err = io.ReadFull(f, head)
	f.Close()
	if err != nil || !isBzImage(head) {
		return fmt.Errorf("kernel %s is not a bzImage", src)
	}
	if err := moveFile(src, dst); err != nil {
		return fmt.Errorf("taking the kernel: %w", err)
	}
	for _, p := range []string{"boot/initrd.img-" + kver, "vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"} {
		if err := removeIfExists(filepath.Join(root, p)); err != nil {
			return err
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
//     logins by key only, said explicitly in sshd_config.d;
//   - /etc/machine-id is empty: systemd then generates an ID at each
//     VM's first boot and, the overlay root being writable, keeps it. Every
//     VM gets its own ID, and none is in "first boot" (which "uninitialized"
//     would mean: ConditionFirstBoot units, systemd-firstboot, presets);
//   - units in unitsToMask are masked, ssh.service is enabled, the default
//     target is multi-user.target;
//   - leftovers of the build (/tmp) are removed.
func prepareTree(root string) error {
	files := []struct {
		path, body string
	}{
		{"etc/fstab", "# banger: no entries. The initramfs mounts / (an overlay on the\n# read-only base image); the agent mounts /work.\n"},
		{"etc/resolv.conf", ""},
		{"etc/machine-id", ""},
	}
	for _, f := range files {
		if err := replaceFile(filepath.Join(root, f.path), []byte(f.body), 0o644); err != nil {
			return err
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/hosts")); errors.Is(err, os.ErrNotExist) {
		hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
		if err := replaceFile(filepath.Join(root, "etc/hosts"), []byte(hosts), 0o644); err != nil {
			return err
		}
	}
	if err := removeIfExists(filepath.Join(root, "etc/hostname")); err != nil {
		return err
	}
	if err := prepareSSH(root); err != nil {
		return err
	}
	if err := prepareSystemd(root); err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(root, "tmp"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cleaning /tmp: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(root, "tmp", e.Name())); err != nil {
			return fmt.Errorf("cleaning /tmp: %w", err)
		}
	}
	return nil
}

// sshdDropIn is banger's sshd configuration. prohibit-password is
// Debian's compiled-in default already (sshd -T shows without-password);
// saying it keeps it true if a package changes sshd_config.
const sshdDropIn = "# banger: root logs in with keys only; host keys are per VM.\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"

func prepareSSH(root string) error {
	keys, err := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	if err != nil {
		return fmt.Errorf("removing ssh host keys: %w", err)
	}
	for _, k := range keys {
		if err := removeIfExists(k); err != nil {
			return err
		}
	}
	cfgPath := filepath.Join(root, "etc/ssh/sshd_config")
	cfg, err := readRegular(cfgPath)
	if err != nil {
		return fmt.Errorf("reading sshd_config: %w", err)
	}
	if hasSSHDInclude(cfg) {
		dir := filepath.Join(root, "etc/ssh/sshd_config.d")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("writing sshd config: %w", err)
		}
		return replaceFile(filepath.Join(dir, "banger.conf"), []byte(sshdDropIn), 0o644)
	}
	// sshd takes the first value it reads for each keyword: go first.
	return replaceFile(cfgPath, append([]byte(sshdDropIn), cfg...), 0o644)
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
func hasUnit(root, unit string) bool {
	names := []string{unit}
	if at := strings.Index(unit, "@"); at >= 0 {
		if dot := strings.LastIndex(unit, "."); dot > at+1 {
			names = append(names, unit[:at+1]+unit[dot:])
		}
	}
	for _, d := range unitDirs {
		for _, n := range names {
			if _, err := os.Lstat(filepath.Join(root, d, n)); err == nil {
				return true
			}
		}
	}
	return false
}

func prepareSystemd(root string) error {
	etc := filepath.Join(root, "etc/systemd/system")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return fmt.Errorf("configuring systemd: %w", err)
	}
	wants, err := filepath.Glob(filepath.Join(etc, "*.wants"))
	if err != nil {
		return fmt.Errorf("configuring systemd: %w", err)
	}
	for _, unit := range unitsToMask {
		if !hasUnit(root, unit) {
			continue
		}
		for _, w := range wants {
			if err := removeIfExists(filepath.Join(w, unit)); err != nil {
				return err
			}
		}
		if err := replaceSymlink("/dev/null", filepath.Join(etc, unit)); err != nil {
			return err
		}
	}
	if !hasUnit(root, "multi-user.target") {
		return errors.New("configuring systemd: the tree has no multi-user.target (is systemd-sysv installed?)")
	}
	if err := replaceSymlink("/lib/systemd/system/multi-user.target", filepath.Join(etc, "default.target")); err != nil {
		return err
	}
	if !hasUnit(root, "ssh.service") {
		return errors.New("configuring systemd: the tree has no ssh.service (is openssh-server installed?)")
	}
	if err := os.MkdirAll(filepath.Join(etc, "multi-user.target.wants"), 0o755); err != nil {
		return fmt.Errorf("configuring systemd: %w", err)
	}
	// What `systemctl enable ssh` does: WantedBy=multi-user.target and
	// Alias=sshd.service.
	if err := replaceSymlink("/lib/systemd/system/ssh.service", filepath.Join(etc, "multi-user.target.wants/ssh.service")); err != nil {
		return err
	}
	return replaceSymlink("/lib/systemd/system/ssh.service", filepath.Join(etc, "sshd.service"))
}

// replaceFile writes path afresh: whatever was there, a symlink included,
// is removed first, so the write never lands outside the tree.
func replaceFile(path string, data []byte, mode os.FileMode) error {
	if err := removeIfExists(path); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

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

// readRegular reads path if it is a regular file (not through a symlink).
func readRegular(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return os.ReadFile(path)
}

// moveFile renames src to dst, copying when they are on different
// filesystems.
func moveFile(src, dst string) error {
	err := os.Rename(src, dst)
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if err := copyFile(src, dst, fi.Mode().Perm()); err != nil {
		return err
	}
	return os.Remove(src)
}

// moveTree renames the directory src to dst (creating dst's parents),
// copying when they are on different filesystems.
func moveTree(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	err := os.Rename(src, dst)
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	return copyTree(src, dst)
}

// copyTree copies directories, regular files and symlinks (as symlinks)
// from src to a new dst, keeping permission bits.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, fi.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			return copyFile(path, target, fi.Mode().Perm())
		}
		return nil // no device nodes or sockets in a modules tree
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
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
