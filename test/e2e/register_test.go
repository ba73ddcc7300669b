package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

// A kernel and an ext4 root filesystem of the user's own (here the cached
// debian-12 build's, handed over as plain files) become an image after
// their checks, its modules read out of the rootfs; files that are not
// what they claim are refused and register nothing.
func TestImageRegister(t *testing.T) {
	w := newWorld(t)
	dirs, _ := filepath.Glob(filepath.Join(imageCache, "*", "rootfs.ext4"))
	if len(dirs) == 0 {
		t.Fatal("no cached debian-12 build")
	}
	build := filepath.Dir(dirs[0])
	kernel, rootfs := filepath.Join(build, "vmlinuz"), filepath.Join(build, "rootfs.ext4")
	for _, bad := range []struct{ kernel, rootfs, want string }{
		{rootfs, rootfs, "neither a bzImage nor an ELF"},
		{kernel, kernel, "not ext4"},
	} {
		r := w.banger("image", "register", "bad", "--kernel", bad.kernel, "--rootfs", bad.rootfs)
		if r.code == 0 || !strings.Contains(r.stderr, bad.want) {
			t.Errorf("registering %s as kernel and %s as rootfs: exit %d, %q", bad.kernel, bad.rootfs, r.code, r.stderr)
		}
	}
	if r := w.banger("image", "show", "bad"); r.code == 0 {
		t.Error("a refused registration left an image")
	}
	w.ok("image", "register", "mine", "--kernel", kernel, "--rootfs", rootfs)
	if out := w.ok("image", "show", "mine"); !strings.Contains(out, "registered") {
		t.Errorf("image show:\n%s", out)
	}
	if out := w.ok("vm", "run", "--rm", "--image", "mine", "--", "cat", "/etc/debian_version"); !strings.HasPrefix(out, "12.") {
		t.Errorf("a vm of the registered image: %q", out)
	}
	if left, _ := filepath.Glob(filepath.Join(w.stateDir, "images", ".*")); len(left) != 0 {
		t.Errorf("registrations left work behind: %v", left)
	}
}
