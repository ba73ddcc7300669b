package initramfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// entry is one member of a newc archive, as readCPIO parses it.
type entry struct {
	name         string
	mode         uint32
	major, minor uint32
	data         []byte
}

// readCPIO parses a newc archive up to its trailer, checking the padding.
func readCPIO(t *testing.T, b []byte) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	off := 0
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+6+8*i+8]), 16, 32)
		if err != nil {
			t.Fatalf("header at %d: field %d: %v", off, i, err)
		}
		return uint32(v)
	}
	for {
		if off%4 != 0 {
			t.Fatalf("entry at %d is not 4-byte aligned", off)
		}
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("no newc header at %d", off)
		}
		mode, size, major, minor, namesize := field(1), field(6), field(9), field(10), field(11)
		nameStart := off + 110
		name := string(b[nameStart : nameStart+int(namesize)-1])
		if b[nameStart+int(namesize)-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		dataStart := align4(nameStart + int(namesize))
		if name == "TRAILER!!!" {
			return out
		}
		if _, dup := out[name]; dup {
			t.Fatalf("%s appears twice", name)
		}
		out[name] = entry{name: name, mode: mode, major: major, minor: minor, data: b[dataStart : dataStart+int(size)]}
		off = align4(dataStart + int(size))
	}
}

func align4(n int) int { return (n + 3) &^ 3 }

// fakeModules lays out a modules directory like a Debian kernel's: overlay
// built in, virtio_console gzipped, the vsock transport zstd-named.
func fakeModules(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"kernel/drivers/virtio/virtio.ko":                           "",
		"kernel/drivers/virtio/virtio_ring.ko":                      "",
		"kernel/drivers/virtio/virtio_mmio.ko":                      "kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio_pci_modern_dev.ko":            "",
		"kernel/drivers/virtio/virtio_pci_legacy_dev.ko":            "",
		"kernel/drivers/virtio/virtio_pci.ko":                       "kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko",
		"kernel/drivers/block/virtio_blk.ko":                        "kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/net/net_failover.ko":                        "kernel/net/core/failover.ko",
		"kernel/net/core/failover.ko":                               "",
		"kernel/drivers/net/virtio_net.ko":                          "kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/char/virtio_console.ko.gz":                  "kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/char/hw_random/rng-core.ko":                 "",
		"kernel/drivers/char/hw_random/virtio-rng.ko":               "kernel/drivers/char/hw_random/rng-core.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio_balloon.ko":                   "kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
		"kernel/net/vmw_vsock/vsock.ko":                             "",
		"kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko": "kernel/net/vmw_vsock/vsock.ko",
		"kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko.zst":    "kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/net/vmw_vsock/vsock.ko",
		"kernel/drivers/gpu/drm/unrelated.ko":                       "kernel/drivers/virtio/virtio.ko",
	}
	var dep strings.Builder
	for rel, deps := range files {
		fmt.Fprintf(&dep, "%s: %s\n", rel, deps)
		content := []byte("module " + moduleName(rel))
		if strings.HasSuffix(rel, ".gz") {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			if _, err := zw.Write(content); err != nil {
				t.Fatal(err)
			}
			if err := zw.Close(); err != nil {
				t.Fatal(err)
			}
			content = buf.Bytes()
		}
		writeFile(t, filepath.Join(dir, rel), content)
	}
	writeFile(t, filepath.Join(dir, "modules.dep"), []byte(dep.String()))
	writeFile(t, filepath.Join(dir, "modules.builtin"), []byte("kernel/fs/ext4/ext4.ko\nkernel/fs/overlayfs/overlay.ko\n"))
	return dir
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func build(t *testing.T, modulesDir string) []byte {
	t.Helper()
	agent := filepath.Join(t.TempDir(), "banger-agent")
	writeFile(t, agent, []byte("#!agent binary, 27 bytes\n"))
	var buf bytes.Buffer
	if err := Build(context.Background(), &buf, agent, modulesDir); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBuild(t *testing.T) {
	mods := fakeModules(t)
	archive := build(t, mods)
	entries := readCPIO(t, archive)

	init := entries["init"]
	if init.mode != 0o100755 || string(init.data) != "#!agent binary, 27 bytes\n" {
		t.Errorf("init: mode %o, data %q", init.mode, init.data)
	}
	if c := entries["dev/console"]; c.mode != 0o020600 || c.major != 5 || c.minor != 1 {
		t.Errorf("dev/console: mode %o, rdev %d:%d; want char 5:1", c.mode, c.major, c.minor)
	}
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "newroot", "lower", "upperfs", "lib", "lib/modules", "lib/modules/kernel/drivers/virtio"} {
		if e, ok := entries[d]; !ok || e.mode&0o170000 != 0o040000 {
			t.Errorf("directory %s missing or not a directory (mode %o)", d, e.mode)
		}
	}
	if m := entries["tmp"].mode; m != 0o041777 {
		t.Errorf("tmp mode %o, want 41777", m)
	}

	order := strings.Fields(string(entries["lib/modules/banger.order"].data))
	want := []string{
		"/lib/modules/kernel/drivers/virtio/virtio.ko",
		"/lib/modules/kernel/drivers/virtio/virtio_ring.ko",
		"/lib/modules/kernel/drivers/virtio/virtio_mmio.ko",
		"/lib/modules/kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
		"/lib/modules/kernel/drivers/virtio/virtio_pci_modern_dev.ko",
		"/lib/modules/kernel/drivers/virtio/virtio_pci.ko",
		"/lib/modules/kernel/drivers/block/virtio_blk.ko",
		"/lib/modules/kernel/net/core/failover.ko",
		"/lib/modules/kernel/drivers/net/net_failover.ko",
		"/lib/modules/kernel/drivers/net/virtio_net.ko",
		"/lib/modules/kernel/drivers/char/virtio_console.ko",
		"/lib/modules/kernel/drivers/char/hw_random/rng-core.ko",
		"/lib/modules/kernel/drivers/char/hw_random/virtio-rng.ko",
		"/lib/modules/kernel/drivers/virtio/virtio_balloon.ko",
		"/lib/modules/kernel/net/vmw_vsock/vsock.ko",
		"/lib/modules/kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko",
		"/lib/modules/kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko.zst",
	}
	if strings.Join(order, "\n") != strings.Join(want, "\n") {
		t.Errorf("order file:\n%s\nwant:\n%s", strings.Join(order, "\n"), strings.Join(want, "\n"))
	}
	for _, p := range order {
		e, ok := entries[strings.TrimPrefix(p, "/")]
		if !ok {
			t.Errorf("order file names %s, which is not in the archive", p)
			continue
		}
		if e.mode != 0o100644 {
			t.Errorf("%s mode %o", p, e.mode)
		}
		if want := "module " + moduleName(p); string(e.data) != want {
			t.Errorf("%s holds %q, want %q (gzip must be decompressed)", p, e.data, want)
		}
	}
	for name := range entries {
		if strings.Contains(name, "unrelated") || strings.Contains(name, "overlay") {
			t.Errorf("archive holds %s, which nothing needs", name)
		}
	}

	if again := build(t, mods); !bytes.Equal(again, archive) {
		t.Error("two builds from the same inputs differ")
	}
}

func TestBuildMissingModule(t *testing.T) {
	mods := fakeModules(t)
	// Drop virtio_blk from modules.dep: it is then neither a file nor built in.
	dep, _ := os.ReadFile(filepath.Join(mods, "modules.dep"))
	var kept []string
	for _, l := range strings.Split(string(dep), "\n") {
		if !strings.HasPrefix(l, "kernel/drivers/block/virtio_blk.ko:") {
			kept = append(kept, l)
		}
	}
	writeFile(t, filepath.Join(mods, "modules.dep"), []byte(strings.Join(kept, "\n")))
	err := Build(context.Background(), io.Discard, "/dev/null", mods)
	if err == nil || !strings.Contains(err.Error(), "module virtio_blk is neither") {
		t.Fatalf("err = %v, want one naming virtio_blk", err)
	}
}

func TestResolveErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "modules.dep"), []byte("a.ko: b.ko\nb.ko: a.ko\nc.ko: gone.ko\n"))
	if _, err := resolve(dir, []string{"a"}); err == nil || !strings.Contains(err.Error(), "cycle: a → b → a") {
		t.Errorf("cycle: err = %v", err)
	}
	if _, err := resolve(dir, []string{"c"}); err == nil || !strings.Contains(err.Error(), "module gone (needed by c)") {
		t.Errorf("missing dependency: err = %v", err)
	}
	if _, err := resolve(t.TempDir(), []string{"c"}); err == nil || !strings.Contains(err.Error(), "modules.dep") {
		t.Errorf("no modules.dep: err = %v", err)
	}
}

func TestRelPathAndName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/fs/a.ko": "kernel/fs/a.ko",
		"/lib/modules/6.1.0-1-cloud-amd64/kernel/fs/a.ko": "kernel/fs/a.ko",
	} {
		if got := relPath(in); got != want {
			t.Errorf("relPath(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"x/virtio-rng.ko": "virtio_rng", "x/vsock.ko.xz": "vsock", "overlay.ko.zst": "overlay"} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}

// An image's modules.dep must not pull host files into the guest.
func TestModulePathsStayInTheModulesDir(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "secret.ko")
	if err := os.WriteFile(outside, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, dep := range map[string]string{
		"dotdot":  "../" + filepath.Base(filepath.Dir(outside)) + "/secret.ko",
		"symlink": "kernel/link.ko",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "kernel"), 0o755); err != nil {
				t.Fatal(err)
			}
			_ = os.Symlink(outside, filepath.Join(dir, "kernel", "link.ko"))
			if _, _, err := readModule(dir, dep); err == nil {
				t.Fatalf("modules.dep path %q read a file outside the modules directory", dep)
			}
		})
	}
}
