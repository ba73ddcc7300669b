package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// bundlePort is where the test's HTTP server serves bundles, on loopback
// inside the test's namespace.
const bundlePort = 5001

// serveFiles serves dir over HTTP (busybox httpd, which answers range
// requests) on loopback in the namespace and returns the base URL.
func (w *world) serveFiles(dir string) string {
	t := w.t
	t.Helper()
	bin, err := exec.LookPath("busybox")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("busybox is not installed (scripts/deps installs busybox-static)")
		}
		t.Skip("busybox is not installed")
	}
	w.serve("httpd", bundlePort, bin, "httpd", "-f", "-p", fmt.Sprintf("127.0.0.1:%d", bundlePort), "-h", dir)
	return fmt.Sprintf("http://127.0.0.1:%d", bundlePort)
}

// TestImageBundle moves an image through a bundle: export, delete, pull
// the file back and boot it; pull it over HTTP, resuming a download that
// broke off; refuse a tampered and a truncated bundle, leaving nothing.
func TestImageBundle(t *testing.T) {
	w := newWorld(t)
	reg := w.startRegistry()
	w.pushImages(reg)
	ref := reg + "/bb:1"
	w.ok("image", "pull", ref, "--name", "bb")

	dir := filepath.Join(w.dir, "bundles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "bb.tar.zst")
	w.ok("image", "export", "bb", "-o", file)
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bundle: %d bytes", len(good))
	w.ok("image", "delete", "bb")

	// Refused: a byte changed in the middle, the first half alone, junk.
	tampered := append([]byte{}, good...)
	tampered[len(tampered)/2] ^= 0x40
	cases := map[string][]byte{"tampered.tar.zst": tampered, "truncated.tar.zst": good[:len(good)/2], "junk.tar.zst": []byte("not a bundle at all\n")}
	for name, data := range cases {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		r := w.banger("image", "pull", p)
		if r.code == 0 {
			t.Errorf("pull of %s was accepted", name)
			continue
		}
		want := "corrupt"
		if name == "junk.tar.zst" {
			want = "not a banger bundle"
		}
		if !strings.Contains(r.stderr, want) {
			t.Errorf("pull of %s: %q, want it to say %q", name, r.stderr, want)
		}
		if name == "tampered.tar.zst" && !strings.Contains(r.stderr, "rootfs.ext4") && !strings.Contains(r.stderr, "vmlinuz") && !strings.Contains(r.stderr, "modules/") {
			t.Errorf("pull of a tampered bundle does not name the file that failed: %q", r.stderr)
		}
	}
	if r := w.banger("image", "show", "bb"); r.code == 0 {
		t.Error("a refused bundle left an image")
	}
	if left, _ := filepath.Glob(filepath.Join(w.stateDir, "images", ".*")); len(left) != 0 {
		t.Errorf("refused bundles left work behind: %v", left)
	}

	// The good file: the image boots with its config (cmd, user) intact.
	w.ok("image", "pull", file)
	if out := w.ok("image", "show", "bb"); !strings.Contains(out, "bundle of bb") {
		t.Errorf("image show of a loaded bundle:\n%s", out)
	}
	if out := w.ok("vm", "run", "--rm", "--image", "bb"); strings.TrimSpace(out) != "from-cmd hello" {
		t.Errorf("vm run of the loaded image ran %q, want the image's cmd", out)
	}
	if out := w.ok("vm", "run", "--rm", "--image", "bb", "--", "id", "-un"); strings.TrimSpace(out) != "app" {
		t.Errorf("the loaded image's user: %q", out)
	}
	if r := w.banger("image", "pull", file); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("a second load under the same name: exit %d %q", r.code, r.stderr)
	}

	// Over HTTP. A part left by a download that broke off is resumed: with
	// a wrong byte in that part the resumed bundle is refused (and the
	// part dropped), so the next pull starts over and succeeds.
	base := w.serveFiles(dir)
	url := base + "/bb.tar.zst"
	cacheDir := filepath.Join(w.dir, "cache", "banger", "bundles")
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		t.Fatal(err)
	}
	w.ok("image", "pull", url, "--name", "bb-http")
	if out := w.ok("vm", "run", "--rm", "--image", "bb-http", "--", "cat", "/etc/issue"); out != "upper\n" {
		t.Errorf("a vm of the downloaded image: %q", out)
	}
	if parts, _ := filepath.Glob(filepath.Join(cacheDir, "*")); len(parts) != 0 {
		t.Errorf("a finished download was left in the cache: %v", parts)
	}
	// Seed a broken-off part: the first half, one byte changed.
	half := append([]byte{}, good[:len(good)/2]...)
	half[len(half)/3] ^= 0x01
	w.ok("image", "delete", "bb-http")
	if r := w.banger("image", "pull", base+"/missing.tar.zst"); r.code == 0 || !strings.Contains(r.stderr, "404") {
		t.Errorf("pull of a missing URL: exit %d %q", r.code, r.stderr)
	}
	seedPart(t, cacheDir, half)
	if r := w.banger("image", "pull", url, "--name", "bb-http"); r.code == 0 || !strings.Contains(r.stderr, "corrupt") {
		t.Fatalf("a resumed download with a bad part: exit %d %q (was it resumed at all?)", r.code, r.stderr)
	}
	if parts, _ := filepath.Glob(filepath.Join(cacheDir, "*")); len(parts) != 0 {
		t.Errorf("a refused download was kept: %v", parts)
	}
	w.ok("image", "pull", url, "--name", "bb-http")
	if out := w.ok("vm", "run", "--rm", "--image", "bb-http", "--", "cat", "/etc/issue"); out != "upper\n" {
		t.Errorf("a vm of the image downloaded again: %q", out)
	}
	// A catalog entry: the URL and the file's sha256; vm run --image NAME
	// downloads and loads it on first use. A wrong sha256 loads nothing.
	sum := sha256.Sum256(good)
	catalog := fmt.Sprintf("[images.shipped]\nbundle = %q\nsha256 = %q\n\n[images.wrongsum]\nbundle = %q\nsha256 = %q\n",
		url, hex.EncodeToString(sum[:]), url, strings.Repeat("0", 64))
	if err := os.WriteFile(filepath.Join(filepath.Dir(w.config), "catalog.toml"), []byte(catalog), 0o644); err != nil {
		t.Fatal(err)
	}
	w.ok("daemon", "stop") // the catalog is read at start; the next command starts it
	if out := w.ok("image", "catalog"); !strings.Contains(out, "shipped") {
		t.Errorf("image catalog lacks the bundle entry:\n%s", out)
	}
	if out := w.ok("vm", "run", "--rm", "--image", "shipped", "--", "cat", "/etc/issue"); out != "upper\n" {
		t.Errorf("vm run --image of a catalog bundle: %q", out)
	}
	if r := w.banger("vm", "run", "--rm", "--image", "wrongsum", "--", "true"); r.code == 0 || !strings.Contains(r.stderr, "the catalog says") {
		t.Errorf("a catalog bundle with the wrong sha256: exit %d %q", r.code, r.stderr)
	}
	if r := w.banger("image", "show", "wrongsum"); r.code == 0 {
		t.Error("a bundle with the wrong sha256 was loaded")
	}
	if parts, _ := filepath.Glob(filepath.Join(cacheDir, "*")); len(parts) != 0 {
		t.Errorf("downloads left in the cache: %v", parts)
	}

	// Plain HTTP to an address that is not loopback is refused up front.
	if r := w.banger("image", "pull", "http://192.0.2.1/x.tar.zst"); r.code == 0 || !strings.Contains(r.stderr, "plain HTTP") {
		t.Errorf("plain HTTP off loopback: exit %d %q", r.code, r.stderr)
	}
	if left, _ := filepath.Glob(filepath.Join(w.stateDir, "images", ".*")); len(left) != 0 {
		t.Errorf("loads left work behind: %v", left)
	}
}

// seedPart puts a partial download where the next pull of the test's
// bundle URL resumes from: the CLI keeps it under the URL's hash.
func seedPart(t *testing.T, cacheDir string, data []byte) {
	t.Helper()
	sum := sha256.Sum256([]byte(fmt.Sprintf("http://127.0.0.1:%d/bb.tar.zst", bundlePort)))
	p := filepath.Join(cacheDir, hex.EncodeToString(sum[:8])+".tar.zst.part")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
