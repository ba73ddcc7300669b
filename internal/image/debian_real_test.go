package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBuildDebianReal builds the real debian-12 image from the Debian
// mirror (about a minute and ~100 MB of downloads the first time; cached
// by recipe afterwards). It runs as root when BANGER_TEST_IMAGE_CACHE names
// a cache directory, and always under CI=true (cache default
// /var/cache/banger-test), where it must not skip.
func TestBuildDebianReal(t *testing.T) {
	ci := os.Getenv("CI") == "true"
	cache := os.Getenv("BANGER_TEST_IMAGE_CACHE")
	if cache == "" && ci {
		cache = "/var/cache/banger-test"
	}
	if cache == "" {
		t.Skip("set BANGER_TEST_IMAGE_CACHE=<dir> and run as root to build the real debian-12 image")
	}
	if os.Geteuid() != 0 {
		if ci {
			t.Fatal("CI=true but not root: building the debian image needs root (mmdebstrap --mode=root)")
		}
		t.Skip("building the debian image needs root (mmdebstrap --mode=root)")
	}
	opts := DebianOptions{}
	cached := false
	if _, err := loadCacheEntry(filepath.Join(cache, opts.RecipeKey())); err == nil {
		cached = true
	}
	start, last, phase := time.Now(), time.Now(), ""
	art, err := CachedDebian(t.Context(), cache, opts, func(p string) {
		if phase != "" {
			t.Logf("phase %-22q %v", phase, time.Since(last).Round(10*time.Millisecond))
		}
		phase, last = p, time.Now()
	})
	if err != nil {
		t.Fatal(err)
	}
	if phase != "" {
		t.Logf("phase %-22q %v (incl. modules move, digest)", phase, time.Since(last).Round(10*time.Millisecond))
	}
	t.Logf("cached=%v total %v; kernel %s; artifacts %d MB", cached, time.Since(start).Round(10*time.Millisecond),
		art.KernelVersion, art.SizeBytes>>20)

	assertArtifacts(t, art)
	if !strings.HasSuffix(art.KernelVersion, "-cloud-amd64") || filepath.Base(art.ModulesDir) != art.KernelVersion {
		t.Errorf("kernel version %q, modules %s", art.KernelVersion, art.ModulesDir)
	}
	osRelease := debugfs(t, art.Rootfs, "cat /usr/lib/os-release")
	if !strings.Contains(osRelease, "VERSION_CODENAME=bookworm") || !strings.Contains(osRelease, `VERSION_ID="12"`) {
		t.Errorf("os-release:\n%s", osRelease)
	}
	if st := debugfs(t, art.Rootfs, "stat /usr/sbin/sshd"); !strings.Contains(st, "Type: regular") {
		t.Errorf("no /usr/sbin/sshd:\n%s", st)
	}
	if st := debugfs(t, art.Rootfs, "stat /usr/lib/modules/"+art.KernelVersion+"/modules.dep"); !strings.Contains(st, "Type: regular") {
		t.Errorf("the rootfs has no modules.dep:\n%s", st)
	}
	ls := debugfs(t, art.Rootfs, "ls /etc/ssh") + debugfs(t, art.Rootfs, "ls /etc") + debugfs(t, art.Rootfs, "ls /boot")
	for _, gone := range []string{"ssh_host_", " hostname ", "vmlinuz", "initrd.img"} {
		if strings.Contains(ls, gone) {
			t.Errorf("%s still in the image", gone)
		}
	}
	for _, link := range []string{"apt-daily.timer", "getty@tty1.service", "fstrim.timer"} {
		if st := debugfs(t, art.Rootfs, "stat /etc/systemd/system/"+link); !strings.Contains(st, `Fast link dest: "/dev/null"`) {
			t.Errorf("%s is not masked:\n%s", link, st)
		}
	}
	if st := debugfs(t, art.Rootfs, "stat /etc/systemd/system/multi-user.target.wants/ssh.service"); !strings.Contains(st, "ssh.service") {
		t.Errorf("ssh.service is not enabled:\n%s", st)
	}
	if mid := debugfs(t, art.Rootfs, "cat /etc/machine-id"); mid != "" {
		t.Errorf("machine-id is %q", mid)
	}
}
