package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// registryPort is where the test's registry listens, on the loopback of
// the test's network namespace.
const registryPort = 5000

// startRegistry runs Debian's docker-registry (the CNCF distribution
// registry) in the world's namespace, storing under the world's dir.
func (w *world) startRegistry() string {
	t := w.t
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("docker-registry is not installed (scripts/deps installs it)")
		}
		t.Skip("docker-registry is not installed")
	}
	dir := filepath.Join(w.dir, "registry")
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%d\n", dir, registryPort)
	cfgPath := filepath.Join(w.dir, "registry.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	w.serve("registry", registryPort, bin, "serve", cfgPath)
	return fmt.Sprintf("127.0.0.1:%d", registryPort)
}

// serve starts argv in the namespace (its output in NAME.log), stops it
// with SIGTERM when the test ends, and waits until it answers on port.
func (w *world) serve(name string, port int, argv ...string) {
	t := w.t
	t.Helper()
	logf, err := os.Create(filepath.Join(w.dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", w.ns}, argv...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logf.Close()
	})
	for i := 0; ; i++ {
		out, err := exec.Command("ip", "netns", "exec", w.ns, "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d", port)).CombinedOutput()
		if err == nil {
			return
		}
		if i > 100 {
			t.Fatalf("%s does not answer: %v %s", name, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pushImages pushes the test images from inside the namespace, by running
// this test binary there (pushMain). With a rootfs directory it pushes that
// tree as the one-layer image deb:12 instead.
func (w *world) pushImages(registry string, rootfs ...string) {
	w.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		w.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", w.ns, exe)
	cmd.Env = append(os.Environ(), "BANGER_E2E_PUSH="+registry)
	switch {
	case len(rootfs) == 1 && strings.HasPrefix(rootfs[0], "as="):
		cmd.Env = append(cmd.Env, "BANGER_E2E_PUSH_AS="+strings.TrimPrefix(rootfs[0], "as="))
	case len(rootfs) == 1:
		cmd.Env = append(cmd.Env, "BANGER_E2E_PUSH_ROOTFS="+rootfs[0])
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		w.t.Fatalf("pushing the test images: %v\n%s", err, out)
	}
}

// pushMain builds the test images and pushes them to registry:
//   - bb:1, init-less: busybox-static with its applets as symlinks, a user
//     "app" (uid 1000), an env, a working directory and a cmd; a second
//     layer whites out a file of the first and adds one;
//   - bb:2, the same content under a new tag plus one layer (shares the
//     first two layers with bb:1).
func pushMain(registry string) int {
	if root := os.Getenv("BANGER_E2E_PUSH_ROOTFS"); root != "" {
		return pushRootfs(registry, root)
	}
	one, two, err := busyboxImages()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if as := os.Getenv("BANGER_E2E_PUSH_AS"); as != "" {
		// TAG=1 or TAG=2: bb:TAG made to hold bb:1 with one more
		// variable (content no other tag has), or bb:2; TAG=big: bb:1
		// with a third layer of 6 MiB of random bytes.
		tag, which, _ := strings.Cut(as, "=")
		img := two
		switch which {
		case "big":
			noise := make([]byte, 6<<20)
			_, _ = rand.Read(noise)
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			_ = tw.WriteHeader(&tar.Header{Name: "noise", Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(noise)), ModTime: time.Unix(1700000000, 0)})
			_, _ = tw.Write(noise)
			_ = tw.Close()
			data := buf.Bytes()
			l, lerr := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
			if lerr == nil {
				img, lerr = mutate.AppendLayers(one, l)
			}
			if lerr != nil {
				fmt.Fprintln(os.Stderr, lerr)
				return 1
			}
		case "1":
			cf, cerr := one.ConfigFile()
			if cerr != nil {
				fmt.Fprintln(os.Stderr, cerr)
				return 1
			}
			c := cf.Config
			c.Env = append(append([]string{}, c.Env...), "MOVING=1")
			if img, err = mutate.Config(one, c); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		ref, err := name.ParseReference(registry + "/bb:" + tag)
		if err == nil {
			err = remote.Write(ref, img)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "push bb:"+tag+":", err)
			return 1
		}
		return 0
	}
	push := func(tag string, img v1.Image) error {
		ref, err := name.ParseReference(registry + "/bb:" + tag)
		if err != nil {
			return err
		}
		return remote.Write(ref, img)
	}
	if err := push("1", one); err != nil {
		fmt.Fprintln(os.Stderr, "push bb:1:", err)
		return 1
	}
	if err := push("2", two); err != nil {
		fmt.Fprintln(os.Stderr, "push bb:2:", err)
		return 1
	}
	return 0
}

// busyboxImages builds bb:1 and bb:2 (see pushMain).
func busyboxImages() (v1.Image, v1.Image, error) {
	busybox, err := os.ReadFile("/usr/bin/busybox")
	if err != nil {
		return nil, nil, fmt.Errorf("busybox-static is not installed: %w", err)
	}
	type entry struct {
		name, link, body string
		mode             int64
		typ              byte
	}
	mkLayer := func(ents []entry) v1.Layer {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range ents {
			hdr := &tar.Header{Name: e.name, Linkname: e.link, Mode: e.mode, Typeflag: e.typ, Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0)}
			if err := tw.WriteHeader(hdr); err != nil {
				panic(err)
			}
			_, _ = tw.Write([]byte(e.body))
		}
		_ = tw.Close()
		data := buf.Bytes()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			panic(err)
		}
		return l
	}
	base := []entry{
		{name: "bin/", mode: 0o755, typ: tar.TypeDir},
		{name: "bin/busybox", mode: 0o755, typ: tar.TypeReg, body: string(busybox)},
		{name: "etc/", mode: 0o755, typ: tar.TypeDir},
		{name: "etc/passwd", mode: 0o644, typ: tar.TypeReg, body: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"},
		{name: "etc/group", mode: 0o644, typ: tar.TypeReg, body: "root:x:0:\napp:x:1000:\n"},
		{name: "etc/motd", mode: 0o644, typ: tar.TypeReg, body: "lower\n"},
		{name: "home/", mode: 0o755, typ: tar.TypeDir},
		{name: "home/app/", mode: 0o755, typ: tar.TypeDir},
		{name: "srv/", mode: 0o777, typ: tar.TypeDir},
	}
	for _, applet := range []string{"sh", "ls", "cat", "echo", "id", "pwd", "tty", "sleep", "uname", "tar", "mkdir", "rm", "env", "sha256sum", "stat", "test", "["} {
		base = append(base, entry{name: "bin/" + applet, link: "busybox", mode: 0o777, typ: tar.TypeSymlink})
	}
	upper := []entry{
		{name: "etc/.wh.motd", typ: tar.TypeReg, mode: 0o644},
		{name: "etc/issue", typ: tar.TypeReg, mode: 0o644, body: "upper\n"},
	}
	cfg := v1.Config{Env: []string{"PATH=/bin", "GREETING=hello"}, WorkingDir: "/srv", User: "app",
		Cmd: []string{"/bin/sh", "-c", "echo from-cmd $GREETING"}}
	build := func(layers ...v1.Layer) (v1.Image, error) {
		img, err := mutate.AppendLayers(empty.Image, layers...)
		if err != nil {
			return nil, err
		}
		return mutate.Config(img, cfg)
	}
	l1, l2 := mkLayer(base), mkLayer(upper)
	one, err := build(l1, l2)
	if err != nil {
		return nil, nil, err
	}
	two, err := build(l1, l2, mkLayer([]entry{{name: "etc/v2", typ: tar.TypeReg, mode: 0o644, body: "2\n"}}))
	return one, two, err
}

// An init-less image from a real registry boots with banger-agent as PID
// 1 serving SSH itself; its config (cmd, env, working directory, user) is
// honoured as docker run honours it; a second pull fetches only the
// manifest, and a tag sharing layers fetches only its own.
func TestOCIImageFromRegistry(t *testing.T) {
	w := newWorld(t)
	reg := w.startRegistry()
	w.pushImages(reg)
	ref := reg + "/bb:1"
	// A user catalog entry names the image too (read at daemon start).
	catalog := fmt.Sprintf("[images.bbcat]\noci = %q\ndescription = \"busybox from the test registry\"\n", ref)
	if err := os.WriteFile(filepath.Join(filepath.Dir(w.config), "catalog.toml"), []byte(catalog), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := w.ok("image", "catalog"); !strings.Contains(out, "bbcat") || !strings.Contains(out, "busybox from the test registry") {
		t.Errorf("image catalog lacks the user's entry:\n%s", out)
	}
	if out := w.ok("vm", "run", "--rm", "--image", "bbcat", "--", "cat", "/etc/issue"); out != "upper\n" {
		t.Errorf("vm run --image of a catalog entry: %q", out)
	}
	w.ok("image", "pull", ref)
	var im struct {
		Digest string `json:"digest"`
		Config struct {
			Cmd  []string `json:"cmd"`
			User string   `json:"user"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(w.ok("image", "show", ref, "--json")), &im); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(im.Digest, "sha256:") || im.Config.User != "app" || len(im.Config.Cmd) != 3 {
		t.Fatalf("image show: %+v", im)
	}
	// Pulled again: current, nothing downloaded.
	start := time.Now()
	w.ok("image", "pull", ref)
	t.Logf("warm re-pull took %v", time.Since(start))
	if log, _ := os.ReadFile(filepath.Join(w.stateDir, "bangerd.log")); !strings.Contains(string(log), `"image is current"`) && !strings.Contains(string(log), "image is current") {
		t.Error("the second pull did not find the image current")
	}

	out := w.ok("vm", "run", "--rm", "--image", ref)
	if strings.TrimSpace(out) != "from-cmd hello" {
		t.Errorf("vm run with no command ran %q, want the image's cmd", out)
	}
	out = w.ok("vm", "run", "--name", "bb", "--image", ref, "--", "sh", "-c", `id -u; pwd; echo $GREETING; cat /etc/issue; test -e /etc/motd && echo motd-visible; cat /proc/1/comm`)
	// PID 1 is banger-agent, the initramfs's /init.
	if want := "1000\n/srv\nhello\nupper\ninit\n"; out != want {
		t.Errorf("in the image:\n%s\nwant:\n%s", out, want)
	}
	var shown struct {
		UsedBy []string `json:"used_by"`
	}
	if err := json.Unmarshal([]byte(w.ok("image", "show", ref, "--json")), &shown); err != nil || len(shown.UsedBy) != 1 || shown.UsedBy[0] != "bb" {
		t.Errorf("image show used_by: %v, %v", shown.UsedBy, err)
	}
	if out := w.ok("vm", "ssh", "bb", "-e", "GREETING=bye", "-u", "root", "-w", "/", "--", "sh", "-c", "id -u; pwd; echo $GREETING"); out != "0\n/\nbye\n" {
		t.Errorf("--env/--user/--workdir over the image's: %q", out)
	}
	// A terminal: a pts, its size, and input typed at it.
	if out, code := w.runTTY("", "vm", "ssh", "-t", "bb", "--", "sh", "-c", "tty; stty size"); code != 0 || !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "40 120") {
		t.Errorf("vm ssh -t: exit %d, %q", code, out)
	}
	if out, code := w.runTTY("typed\r", "vm", "ssh", "-t", "bb", "--", "sh", "-c", "read x; echo got $x"); code != 0 || !strings.Contains(out, "got typed") {
		t.Errorf("typing at vm ssh -t: exit %d, %q", code, out)
	}
	if r := w.banger("vm", "ssh", "bb", "--", "sh", "-c", "exit 7"); r.code != 7 {
		t.Errorf("exit status through the embedded ssh: %d", r.code)
	}
	// Stdin reaches the command.
	cmd := exec.Command("ip", "netns", "exec", w.ns, filepath.Join(binDir, "banger"), "--socket", w.socket,
		"vm", "ssh", "bb", "--", "cat")
	cmd.Stdin = strings.NewReader("through stdin\n")
	if b, err := cmd.Output(); err != nil || string(b) != "through stdin\n" {
		t.Errorf("stdin: %q, %v", b, err)
	}
	w.ok("vm", "delete", "--force", "bb")

	// bb:2 shares two layers: only the new one is fetched.
	w.ok("image", "pull", reg+"/bb:2")
	blobs, _ := os.ReadDir(filepath.Join(w.stateDir, "oci", "blobs", "sha256"))
	if len(blobs) != 3 {
		t.Errorf("%d layer blobs cached for two images sharing two layers, want 3", len(blobs))
	}

	// A moved tag: the name follows it, and a VM created before keeps
	// booting what it was created from, listed without a name until the
	// VM goes and a prune removes it. The tag's new content is bb:2's,
	// stored once for both names.
	moving := reg + "/bb:moving"
	w.pushImages(reg, "as=moving=1")
	w.ok("vm", "create", "--image", moving, "mv")
	var mv struct {
		ImageID string `json:"image_id"`
	}
	if err := json.Unmarshal([]byte(w.ok("vm", "show", "--json", "mv")), &mv); err != nil || !strings.HasPrefix(mv.ImageID, "sha256:") {
		t.Fatalf("vm show image_id: %+v %v", mv, err)
	}
	w.pushImages(reg, "as=moving=2")
	w.ok("image", "pull", moving)
	type listed struct {
		Name   string   `json:"name"`
		ID     string   `json:"id"`
		UsedBy []string `json:"used_by"`
	}
	var ims []listed
	if err := json.Unmarshal([]byte(w.ok("image", "list", "--json")), &ims); err != nil {
		t.Fatal(err)
	}
	var named, kept *listed
	for i := range ims {
		switch {
		case ims[i].Name == moving:
			named = &ims[i]
		case ims[i].ID == mv.ImageID:
			kept = &ims[i]
		}
	}
	if named == nil || named.ID == mv.ImageID || len(named.UsedBy) != 0 || kept == nil || kept.Name != "" || len(kept.UsedBy) != 1 || kept.UsedBy[0] != "mv" {
		t.Fatalf("after the tag moved, image list:\n%+v", ims)
	}
	if out := w.ok("image", "show", mv.ImageID[len("sha256:"):][:12]); !strings.Contains(out, mv.ImageID) {
		t.Errorf("image show by short id:\n%s", out)
	}
	w.ok("image", "delete", moving) // no VM boots from what it names now
	w.ok("vm", "restart", "mv")
	if out := w.ok("vm", "ssh", "mv", "--", "sh", "-c", "test -e /etc/v2 && echo new || echo old $MOVING"); out != "old 1\n" {
		t.Errorf("the vm's base changed when its tag moved: %q", out)
	}
	var pruned struct {
		Images []string `json:"images"`
	}
	if err := json.Unmarshal([]byte(w.ok("image", "prune", "--json")), &pruned); err != nil || len(pruned.Images) != 0 {
		t.Errorf("prune while the vm lives: %+v %v", pruned, err)
	}
	w.ok("vm", "delete", "--force", "mv")
	if err := json.Unmarshal([]byte(w.ok("image", "prune", "--json")), &pruned); err != nil || len(pruned.Images) != 1 || pruned.Images[0] != mv.ImageID {
		t.Errorf("prune after the vm went: %+v %v", pruned, err)
	}
	if dirs, _ := filepath.Glob(filepath.Join(w.stateDir, "images", strings.ReplaceAll(mv.ImageID, ":", "-"))); len(dirs) != 0 {
		t.Errorf("the pruned image's files remain: %v", dirs)
	}

	// The same image as a `docker save` tarball and as an OCI layout,
	// imported from files the CLI streams.
	_, two, err := busyboxImages()
	if err != nil {
		t.Fatal(err)
	}
	saved := filepath.Join(w.dir, "bb.tar")
	tag, _ := name.NewTag("example.test/bb:saved")
	if err := tarball.WriteToFile(saved, tag, two); err != nil {
		t.Fatal(err)
	}
	layoutDir := filepath.Join(w.dir, "bb-layout")
	lp, err := layout.Write(layoutDir, empty.Index)
	if err == nil {
		err = lp.AppendImage(two)
	}
	if err != nil {
		t.Fatal(err)
	}
	w.ok("image", "import", saved)
	w.ok("image", "import", layoutDir, "--name", "bb-layout")
	for _, img := range []string{"example.test/bb:saved", "bb-layout"} {
		if out := w.ok("vm", "run", "--rm", "--image", img, "--", "cat", "/etc/v2"); out != "2\n" {
			t.Errorf("vm run on imported %s: %q", img, out)
		}
	}
	if r := w.banger("image", "import", filepath.Join(w.dir, "registry.yml"), "--name", "junk"); r.code == 0 || !strings.Contains(r.stderr, "not an image archive") {
		t.Errorf("importing a file that is no archive: exit %d, %q", r.code, r.stderr)
	}
	if r := w.banger("image", "show", "junk"); r.code == 0 {
		t.Error("a failed import left an image")
	}
	if left, _ := filepath.Glob(filepath.Join(w.stateDir, "images", ".*")); len(left) != 0 {
		t.Errorf("imports left work behind: %v", left)
	}

	// Prune: bb:2's own layer goes once no image is built from it; the
	// shared ones stay while bb:1 is; --all takes the images too.
	w.ok("image", "delete", reg+"/bb:2")
	w.ok("image", "delete", "example.test/bb:saved")
	w.ok("image", "delete", "bb-layout")
	var pr struct {
		Images []string `json:"images"`
		Layers int      `json:"layers"`
	}
	if err := json.Unmarshal([]byte(w.ok("image", "prune", "--json")), &pr); err != nil || pr.Layers != 1 || len(pr.Images) != 0 {
		t.Errorf("image prune: %+v, %v; want 1 layer and no image", pr, err)
	}
	if r := w.banger("image", "prune", "--all"); r.code != 2 {
		t.Errorf("image prune --all without a terminal or --force: exit %d", r.code)
	}
	if err := json.Unmarshal([]byte(w.ok("image", "prune", "--all", "--force", "--json")), &pr); err != nil || pr.Layers != 2 {
		t.Errorf("image prune --all: %+v, %v; want bb:1's 2 layers", pr, err)
	}
	if blobs, _ := os.ReadDir(filepath.Join(w.stateDir, "oci", "blobs", "sha256")); len(blobs) != 0 {
		t.Errorf("%d layers left after prune --all", len(blobs))
	}
}

// pushRootfs pushes the tree at root (owners, modes, symlinks, hard
// links) as registry/deb:12, one layer, with no config of its own: a
// systemd Debian image as a team would build one.
func pushRootfs(registry, root string) int {
	f, err := os.CreateTemp("", "rootfs-*.tar")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.Remove(f.Name())
	tw := tar.NewWriter(f)
	links := map[uint64]string{}
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		target := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if target, err = os.Readlink(p); err != nil {
				return err
			}
		} else if !fi.Mode().IsRegular() && !fi.IsDir() {
			return nil // no devices or sockets in a test image
		}
		hdr, err := tar.FileInfoHeader(fi, target)
		if err != nil {
			return err
		}
		hdr.Name, hdr.Uname, hdr.Gname = rel, "", ""
		if fi.IsDir() {
			hdr.Name += "/"
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			if first, ok := links[st.Ino]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				links[st.Ino] = rel
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			_, err = io.Copy(tw, in)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "making the rootfs layer:", err)
		return 1
	}
	layer, err := tarball.LayerFromFile(f.Name())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ref, err := name.ParseReference(registry + "/deb:12")
	if err == nil {
		err = remote.Write(ref, img)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "push deb:12:", err)
		return 1
	}
	return 0
}

// A systemd Debian image from a registry (the debian-12 rootfs, read out
// of its ext4 with debugfs, never mounted) boots its own init and sshd.
func TestOCISystemdImage(t *testing.T) {
	w := newWorld(t)
	reg := w.startRegistry()
	root := filepath.Join(w.dir, "debroot")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(imageCache, "debian-12-rootfs.ext4")
	if matches, _ := filepath.Glob(filepath.Join(imageCache, "*", "rootfs.ext4")); len(matches) > 0 {
		img = matches[0]
	}
	if out, err := exec.Command("debugfs", "-R", "rdump / "+root, img).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump: %v\n%s", err, out)
	}
	w.pushImages(reg, root)
	start := time.Now()
	out := w.ok("vm", "run", "--rm", "--image", reg+"/deb:12", "--", "sh", "-c", "cat /proc/1/comm; cat /etc/debian_version")
	t.Logf("pull, boot and run took %v", time.Since(start))
	if !strings.HasPrefix(out, "systemd\n12.") {
		t.Errorf("in the systemd image: %q", out)
	}
}
