package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// newcArchive is a gzip-compressed newc cpio archive of one file, as an
// initrd of the user's own would be.
func newcArchive(name, body string) []byte {
	var cpio bytes.Buffer
	entry := func(name string, mode int, body string) {
		fmt.Fprintf(&cpio, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", 1, mode, 0, 0, 1, 0, len(body), 0, 0, 0, 0, len(name)+1, 0)
		cpio.WriteString(name + "\x00")
		for cpio.Len()%4 != 0 {
			cpio.WriteByte(0)
		}
		cpio.WriteString(body)
		for cpio.Len()%4 != 0 {
			cpio.WriteByte(0)
		}
	}
	entry(name, 0o100644, body)
	entry("TRAILER!!!", 0, "")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(cpio.Bytes())
	_ = zw.Close()
	return gz.Bytes()
}

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

	// An initrd of the user's own goes before banger's initramfs in the
	// one the VMM boots, travels in bundles, and must look like one.
	initrd := filepath.Join(w.dir, "initrd.gz")
	own := newcArchive("etc/banger-e2e-initrd", "mine\n")
	if err := os.WriteFile(initrd, own, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := w.banger("image", "register", "bad", "--kernel", kernel, "--rootfs", rootfs, "--initrd", kernel); r.code == 0 || !strings.Contains(r.stderr, "initrd is neither") {
		t.Errorf("registering a kernel as an initrd: exit %d, %q", r.code, r.stderr)
	}
	w.ok("image", "register", "withinitrd", "--kernel", kernel, "--rootfs", rootfs, "--initrd", initrd)
	if out := w.ok("image", "show", "withinitrd"); !strings.Contains(out, "Initrd:") {
		t.Errorf("image show of an image with an initrd:\n%s", out)
	}
	w.ok("vm", "create", "--image", "withinitrd", "ri")
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(w.handles(w.show("ri")).PID) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(string(cmdline), "\x00")
	booted := ""
	for i, a := range args {
		if a == "-initrd" && i+1 < len(args) {
			booted = args[i+1]
		}
	}
	if b, err := os.ReadFile(booted); err != nil || !bytes.HasPrefix(b, own) || len(b) <= len(own)+4 {
		t.Errorf("the vm's initramfs %q does not start with the image's initrd and go on with banger's (%d bytes, %v)", booted, len(b), err)
	}
	if out := w.ok("vm", "ssh", "ri", "--", "cat", "/etc/debian_version"); !strings.HasPrefix(out, "12.") {
		t.Errorf("a vm of the image with an initrd: %q", out)
	}
	w.ok("vm", "delete", "--force", "ri")
	bundle := filepath.Join(w.dir, "withinitrd.tar.zst")
	w.ok("image", "export", "withinitrd", "-o", bundle)
	w.ok("image", "delete", "withinitrd")
	w.ok("image", "pull", bundle)
	var shown struct {
		Initrd string `json:"initrd_path"`
	}
	if err := json.Unmarshal([]byte(w.ok("image", "show", "--json", "withinitrd")), &shown); err != nil || shown.Initrd == "" {
		t.Errorf("the initrd did not come back in the bundle: %+v %v", shown, err)
	} else if b, _ := os.ReadFile(shown.Initrd); !bytes.Equal(b, own) {
		t.Error("the initrd that came back in the bundle differs")
	}
	if left, _ := filepath.Glob(filepath.Join(w.stateDir, "images", ".*")); len(left) != 0 {
		t.Errorf("registrations left work behind: %v", left)
	}
}
