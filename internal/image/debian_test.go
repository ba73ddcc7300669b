package image

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/host/run"
	"github.com/banger-dev/banger/internal/rootfs"
)

func TestRecipeIgnoresPackageOrderAndDirs(t *testing.T) {
	a := DebianOptions{Packages: []string{"vim", "curl", " jq ", "curl", ""}, WorkDir: "/a", OutDir: "/b"}
	b := DebianOptions{Mirror: DefaultDebianMirror + "/", Suite: "bookworm", Packages: []string{"jq", "vim", "curl"}}
	if a.Recipe() != b.Recipe() {
		t.Fatalf("recipes differ:\n%s\n%s", a.Recipe(), b.Recipe())
	}
	if a.RecipeKey() != b.RecipeKey() || len(a.RecipeKey()) != 16 {
		t.Fatalf("keys: %q %q", a.RecipeKey(), b.RecipeKey())
	}
	// Extras that are already in the base set change nothing.
	if (DebianOptions{Packages: []string{"git"}}).Recipe() != (DebianOptions{}).Recipe() {
		t.Fatal("a base package as an extra changed the recipe")
	}
	want := "banger-debian-builder v1\nsuite bookworm\nmirror http://deb.debian.org/debian\n" +
		"packages ca-certificates,curl,git,iproute2,iputils-ping,jq,less,linux-image-cloud-amd64,openssh-server,procps,systemd-sysv,udev,vim\n"
	if got := a.recipe(1); got != want {
		t.Fatalf("recipe v1:\n%s\nwant:\n%s", got, want)
	}
}

func TestRecipeChangesWithInputs(t *testing.T) {
	base := DebianOptions{}
	for name, o := range map[string]DebianOptions{
		"suite":   {Suite: "trixie"},
		"mirror":  {Mirror: "http://mirror.example/debian"},
		"package": {Packages: []string{"curl"}},
	} {
		if o.Recipe() == base.Recipe() || o.RecipeKey() == base.RecipeKey() {
			t.Errorf("%s: recipe unchanged", name)
		}
	}
	if base.recipe(debianBuilderVersion) == base.recipe(debianBuilderVersion+1) {
		t.Error("a builder version bump does not change the recipe")
	}
}

func TestDebianDefaults(t *testing.T) {
	o := DebianOptions{}.withDefaults()
	if o.Mirror != "http://deb.debian.org/debian" || o.Suite != "bookworm" || len(o.Packages) != 0 {
		t.Fatalf("defaults: %+v", o)
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	pk := o.allPackages()
	for _, p := range []string{"systemd-sysv", "openssh-server", "iproute2", "ca-certificates", "git",
		"linux-image-cloud-amd64", "udev", "iputils-ping", "procps", "less"} {
		if !contains(pk, p) {
			t.Errorf("base set lacks %s", p)
		}
	}
}

func TestDebianValidate(t *testing.T) {
	for _, o := range []DebianOptions{
		{Packages: []string{"curl,evil"}},
		{Packages: []string{"-oAPT::x"}},
		{Packages: []string{"Curl"}},
		{Suite: "../bookworm"},
		{Suite: "bookworm main"},
		{Mirror: "deb http://x/debian bookworm main"},
		{Mirror: "ftp://x/debian"},
		{Mirror: "http:///debian"},
		{Mirror: "/srv/debian"},
	} {
		if err := o.withDefaults().validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	for _, o := range []DebianOptions{
		{Packages: []string{"g++", "libc6-dev", "python3.11"}},
		{Mirror: "file:///srv/debian"},
		{Mirror: "https://mirror.example:8443/debian/"},
	} {
		if err := o.withDefaults().validate(); err != nil {
			t.Errorf("%+v refused: %v", o, err)
		}
	}
}

// fakeTools finds mmdebstrap at fake (if set) and nothing else but
// mkfs.ext4, debugfs and depmod from the real PATH; no unshare, so the
// fake runs unwrapped.
func fakeTools(fake string) tools {
	return tools{
		lookPath: func(name string) (string, error) {
			switch name {
			case "mmdebstrap":
				if fake != "" {
					return fake, nil
				}
			case "mkfs.ext4", "depmod":
				return exec.LookPath(name)
			}
			return "", fmt.Errorf("%s: %w", name, exec.ErrNotFound)
		},
		output:    run.Output,
		euid:      func() int { return 0 },
		minRootfs: 64 << 20,
	}
}

func TestMmdebstrapMissing(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	_, err := fakeTools("").buildDebian(t.Context(), DebianOptions{OutDir: out}, nil)
	if err == nil || err.Error() != "mmdebstrap not found; install it: apt-get install mmdebstrap" {
		t.Fatalf("error: %v", err)
	}
	assertEmptyDir(t, dir)
}

func TestBuildDebianNeedsRoot(t *testing.T) {
	requireTool(t, "mkfs.ext4")
	tl := fakeTools("/bin/true")
	tl.euid = func() int { return 1000 }
	_, err := tl.buildDebian(t.Context(), DebianOptions{OutDir: t.TempDir()}, nil)
	if err == nil || !strings.Contains(err.Error(), "needs root") {
		t.Fatalf("error: %v", err)
	}
}

func TestMirrorUnreachable(t *testing.T) {
	requireTool(t, "mkfs.ext4")
	dir := t.TempDir()
	fake := writeScript(t, dir, `mkdir -p "$target/etc"
echo 'Err:1 http://mirror.invalid/debian bookworm InRelease' >&2
echo '  Could not resolve '"'"'mirror.invalid'"'"'' >&2
echo 'E: Failed to fetch http://mirror.invalid/debian/dists/bookworm/InRelease  Could not resolve '"'"'mirror.invalid'"'"'' >&2
echo 'E: mmdebstrap failed to run' >&2
exit 25`)
	work, out := filepath.Join(dir, "work"), filepath.Join(dir, "out")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	var phases []string
	_, err := fakeTools(fake).buildDebian(t.Context(),
		DebianOptions{Mirror: "http://mirror.invalid/debian", WorkDir: work, OutDir: out},
		func(p string) { phases = append(phases, p) })
	if err == nil || !strings.HasPrefix(err.Error(), "debian mirror http://mirror.invalid/debian is unreachable") {
		t.Fatalf("error: %v", err)
	}
	var re *run.Error
	if !errors.As(err, &re) || re.ExitCode() != 25 {
		t.Fatalf("run.Error not wrapped: %v", err)
	}
	if strings.Join(phases, ",") != PhaseDownloading {
		t.Fatalf("phases: %v", phases)
	}
	assertEmptyDir(t, work)
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("output directory left behind: %v", err)
	}
}

func TestExplainMmdebstrap(t *testing.T) {
	o := DebianOptions{}.withDefaults()
	for out, want := range map[string]string{
		"Err:1 http://deb.debian.org/debian bookworm InRelease\n  Could not connect to deb.debian.org:80 (1.2.3.4) - connect (111: Connection refused)": "debian mirror http://deb.debian.org/debian is unreachable",
		"W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure resolving 'deb.debian.org'":                        "debian mirror http://deb.debian.org/debian is unreachable",
		"E: Failed to fetch http://deb.debian.org/debian/dists/bookwurm/InRelease  404  Not Found [IP: 1.2.3.4 80]":                                     `debian mirror http://deb.debian.org/debian has no suite "bookworm"`,
		"E: Unable to locate package nosuchpkg":          "debian suite bookworm has no package nosuchpkg",
		"E: Package 'foo' has no installation candidate": "debian suite bookworm has no package foo",
		"E: something else":                              "running mmdebstrap: ",
	} {
		err := explainMmdebstrap(&run.Error{Argv: []string{"mmdebstrap"}, Err: errors.New("exit status 1"), Output: out}, o)
		if !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q:\n got %v\nwant %s…", out, err, want)
		}
	}
}

// fakeTree is a shell fragment that builds what mmdebstrap would leave in
// $target, small: merged /usr, a bzImage-looking kernel, modules with
// modules.dep, the config files prepareTree changes, and an absolute
// resolv.conf symlink pointing at $outside (a host file it must not touch).
const fakeTree = `set -e
mkdir -p "$target/usr/lib/modules/6.1.0-9-cloud-amd64/kernel/drivers/block" "$target/boot" \
  "$target/etc/ssh/sshd_config.d" "$target/usr/lib/systemd/system" "$target/usr/sbin" \
  "$target/etc/systemd/system/timers.target.wants" "$target/etc/systemd/system/getty.target.wants" "$target/tmp/junk"
ln -s usr/lib "$target/lib"
k="$target/boot/vmlinuz-6.1.0-9-cloud-amd64"
head -c 514 /dev/zero > "$k"; printf HdrS >> "$k"; head -c 4000 /dev/zero >> "$k"
printf 'CONFIG_EXT4_FS=y\n' > "$target/boot/config-6.1.0-9-cloud-amd64"
: > "$target/boot/initrd.img-6.1.0-9-cloud-amd64"
ln -s boot/vmlinuz-6.1.0-9-cloud-amd64 "$target/vmlinuz"
m="$target/usr/lib/modules/6.1.0-9-cloud-amd64"
printf 'fake module' > "$m/kernel/drivers/block/virtio_blk.ko"
echo 'kernel/drivers/block/virtio_blk.ko:' > "$m/modules.dep"
echo buildhost > "$target/etc/hostname"
ln -s "$outside" "$target/etc/resolv.conf"
echo '# UNCONFIGURED FSTAB FOR BASE SYSTEM' > "$target/etc/fstab"
echo 0123456789abcdef > "$target/etc/machine-id"
printf 'Include /etc/ssh/sshd_config.d/*.conf\n#PermitRootLogin prohibit-password\n' > "$target/etc/ssh/sshd_config"
mkdir -p "$target/etc/pam.d"
printf '# and a static part from /etc/motd.\nsession    optional     pam_motd.so  motd=/run/motd.dynamic\nsession    optional     pam_motd.so noupdate\n' > "$target/etc/pam.d/sshd"
for k in rsa ecdsa ed25519; do echo key > "$target/etc/ssh/ssh_host_${k}_key"; echo pub > "$target/etc/ssh/ssh_host_${k}_key.pub"; done
for u in ssh.service multi-user.target apt-daily.timer getty@.service e2scrub_all.timer; do echo "[Unit]" > "$target/usr/lib/systemd/system/$u"; done
echo sshd > "$target/usr/sbin/sshd"
ln -s /lib/systemd/system/apt-daily.timer "$target/etc/systemd/system/timers.target.wants/apt-daily.timer"
ln -s /lib/systemd/system/getty@.service "$target/etc/systemd/system/getty.target.wants/getty@tty1.service"
printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n' > "$target/etc/os-release"
`

func TestBuildDebianFake(t *testing.T) {
	requireTool(t, "mkfs.ext4")
	requireTool(t, "debugfs")
	dir := t.TempDir()
	outside := filepath.Join(dir, "host-resolv.conf")
	if err := os.WriteFile(outside, []byte("nameserver 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	argvFile := filepath.Join(dir, "argv")
	fake := writeScript(t, dir, "outside="+outside+"\nprintf '%s\\n' \"$@\" > "+argvFile+"\n"+fakeTree)
	out := filepath.Join(dir, "out")
	var phases []string
	art, err := fakeTools(fake).buildDebian(t.Context(), DebianOptions{Packages: []string{"curl"}, OutDir: out},
		func(p string) { phases = append(phases, p) })
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(phases, ","); got != "downloading packages,configuring,writing rootfs" {
		t.Errorf("phases: %s", got)
	}
	argvText, _ := os.ReadFile(argvFile)
	argv := strings.Split(strings.TrimSuffix(string(argvText), "\n"), "\n")
	for _, want := range []string{"--mode=root", "--variant=minbase",
		"--include=ca-certificates,curl,git,iproute2,iputils-ping,less,linux-image-cloud-amd64,openssh-server,procps,systemd-sysv,udev"} {
		if !contains(argv, want) {
			t.Errorf("mmdebstrap argv lacks %q: %q", want, argv)
		}
	}
	if n := len(argv); n < 3 || argv[n-3] != "bookworm" || filepath.Base(argv[n-2]) != "root" || argv[n-1] != "http://deb.debian.org/debian" {
		t.Errorf("mmdebstrap argv does not end with suite, target, mirror: %q", argv)
	}

	want := Artifacts{Kernel: filepath.Join(out, "vmlinuz"), ModulesDir: filepath.Join(out, "modules", "6.1.0-9-cloud-amd64"),
		KernelVersion: "6.1.0-9-cloud-amd64", Rootfs: filepath.Join(out, "rootfs.ext4")}
	if art.Kernel != want.Kernel || art.ModulesDir != want.ModulesDir || art.KernelVersion != want.KernelVersion || art.Rootfs != want.Rootfs {
		t.Fatalf("artifacts %+v", art)
	}
	assertArtifacts(t, art)
	if fi, _ := os.Stat(art.Rootfs); fi.Size() != 64<<20 {
		t.Errorf("rootfs is %d bytes, want the (test's) 64 MiB minimum", fi.Size())
	}
	if b, _ := os.ReadFile(outside); string(b) != "nameserver 192.0.2.1\n" {
		t.Errorf("the build wrote through the tree's resolv.conf symlink: %q", b)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".banger-debian-") {
			t.Errorf("work directory %s left behind", e.Name())
		}
	}

	img := art.Rootfs
	for path, want := range map[string]string{
		"/etc/fstab":                                   "# banger: no entries",
		"/etc/resolv.conf":                             "",
		"/etc/machine-id":                              "",
		"/etc/hosts":                                   "127.0.0.1\tlocalhost\n",
		"/etc/os-release":                              `VERSION_ID="12"`,
		"/boot/config-6.1.0-9-cloud-amd64":             "CONFIG_EXT4_FS=y",
		"/etc/ssh/sshd_config.d/banger.conf":           "PermitRootLogin prohibit-password\nPasswordAuthentication no\n",
		"/etc/pam.d/sshd":                              "# and a static part from /etc/motd.\n# banger: no motd regenerated at each session: session    optional     pam_motd.so  motd=/run/motd.dynamic\nsession    optional     pam_motd.so noupdate\n",
		"/lib/modules/6.1.0-9-cloud-amd64/modules.dep": "virtio_blk.ko",
		"/usr/lib/modules/6.1.0-9-cloud-amd64/kernel/drivers/block/virtio_blk.ko": "fake module",
	} {
		got := debugfs(t, img, "cat "+path)
		if !strings.Contains(got, want) || want == "" && got != "" {
			t.Errorf("%s in the image: %q, want %q", path, got, want)
		}
	}
	ls := debugfs(t, img, "ls -l /etc/ssh") + debugfs(t, img, "ls -l /etc") + debugfs(t, img, "ls -l /boot") + debugfs(t, img, "ls -l /") + debugfs(t, img, "ls -l /tmp")
	for _, gone := range []string{"ssh_host_", "hostname", "vmlinuz", "initrd.img", "junk"} {
		if strings.Contains(ls, gone) {
			t.Errorf("%s still in the image:\n%s", gone, ls)
		}
	}
	links := map[string]string{
		"/etc/systemd/system/apt-daily.timer":                     "/dev/null",
		"/etc/systemd/system/e2scrub_all.timer":                   "/dev/null",
		"/etc/systemd/system/getty@tty1.service":                  "/dev/null",
		"/etc/systemd/system/default.target":                      "/lib/systemd/system/multi-user.target",
		"/etc/systemd/system/multi-user.target.wants/ssh.service": "/lib/systemd/system/ssh.service",
		"/etc/systemd/system/sshd.service":                        "/lib/systemd/system/ssh.service",
	}
	for path, target := range links {
		if got := debugfs(t, img, "stat "+path); !strings.Contains(got, `Fast link dest: "`+target+`"`) {
			t.Errorf("%s: want a link to %s, got:\n%s", path, target, got)
		}
	}
	for _, gone := range []string{"/etc/systemd/system/timers.target.wants/apt-daily.timer",
		"/etc/systemd/system/getty.target.wants/getty@tty1.service", "/etc/systemd/system/fstrim.timer"} {
		if got := debugfs(t, img, "stat "+gone); strings.Contains(got, "Inode:") {
			t.Errorf("%s exists:\n%s", gone, got)
		}
	}
}

func TestBuildDebianCleansUpLateFailure(t *testing.T) {
	requireTool(t, "mkfs.ext4")
	dir := t.TempDir()
	// A tree without ssh.service: the kernel has already moved to OutDir
	// when configuring fails.
	fake := writeScript(t, dir, "outside=/nonexistent\n"+fakeTree+`rm "$target/usr/lib/systemd/system/ssh.service"`+"\n")
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := fakeTools(fake).buildDebian(t.Context(), DebianOptions{OutDir: out, WorkDir: filepath.Join(dir, "work")}, nil)
	if err == nil || !strings.Contains(err.Error(), "no ssh.service") {
		t.Fatalf("error: %v", err)
	}
	assertEmptyDir(t, out) // kept (the caller made it), but empty
	if _, err := os.Stat(filepath.Join(dir, "work")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("work directory left: %v", err)
	}
}

func TestBuildDebianRefusesNonEmptyOutDir(t *testing.T) {
	requireTool(t, "mkfs.ext4")
	out := t.TempDir()
	if err := os.WriteFile(filepath.Join(out, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := fakeTools("/bin/true").buildDebian(t.Context(), DebianOptions{OutDir: out}, nil)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("error: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "keep")); err != nil {
		t.Fatal("a file in the output directory was removed")
	}
}

func TestBuildDebianCancel(t *testing.T) {
	requireTool(t, "mkfs.ext4")
	dir := t.TempDir()
	fake := writeScript(t, dir, `mkdir -p "$target/usr/lib"; touch "$target/partial"; exec sleep 60`)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	out := filepath.Join(dir, "out")
	_, err := fakeTools(fake).buildDebian(ctx, DebianOptions{OutDir: out}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("cancellation took %v", d)
	}
	assertEmptyDir(t, dir, "mmdebstrap", "argv")
}

func TestCachedDebianBuildsOnce(t *testing.T) {
	requireTool(t, "mkfs.ext4")
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	fake := writeScript(t, dir, "echo run >> "+count+"\noutside=/nonexistent\nsleep 0.5\n"+fakeTree)
	cache := filepath.Join(dir, "cache")
	tl := fakeTools(fake)
	opts := DebianOptions{Packages: []string{"curl"}}

	var wg sync.WaitGroup
	arts := make([]Artifacts, 3)
	errs := make([]error, 3)
	for i := range arts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			arts[i], errs[i] = tl.cachedDebian(t.Context(), cache, opts, nil)
		}()
	}
	wg.Wait()
	for i := range arts {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !reflect.DeepEqual(arts[i], arts[0]) {
			t.Fatalf("callers got different artifacts: %+v %+v", arts[i], arts[0])
		}
	}
	if b, _ := os.ReadFile(count); strings.Count(string(b), "run") != 1 {
		t.Fatalf("mmdebstrap ran %d times", strings.Count(string(b), "run"))
	}
	key := opts.RecipeKey()
	entry := filepath.Join(cache, key)
	if arts[0].Rootfs != filepath.Join(entry, "rootfs.ext4") || arts[0].ModulesDir != filepath.Join(entry, "modules", "6.1.0-9-cloud-amd64") {
		t.Fatalf("artifacts not in the entry: %+v", arts[0])
	}
	assertArtifacts(t, arts[0])
	names := dirNames(t, cache)
	if strings.Join(names, " ") != key+" "+key+".lock" {
		t.Fatalf("cache holds %v", names)
	}
	if names := dirNames(t, entry); strings.Join(names, " ") != "artifacts.json modules rootfs.ext4 vmlinuz" {
		t.Fatalf("entry holds %v", names)
	}

	// A broken entry (no manifest) is rebuilt; a stale build is swept.
	if err := os.Remove(filepath.Join(entry, cacheManifest)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(cache, ".build-"+key+"-dead", "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := tl.cachedDebian(t.Context(), cache, opts, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(count); strings.Count(string(b), "run") != 2 {
		t.Fatal("a broken entry was not rebuilt")
	}
	if names := dirNames(t, cache); strings.Join(names, " ") != key+" "+key+".lock" {
		t.Fatalf("cache holds %v", names)
	}
	// A different recipe is another entry.
	if _, err := tl.cachedDebian(t.Context(), cache, DebianOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(dirNames(t, cache)); n != 4 {
		t.Fatalf("cache holds %d names", n)
	}
}

func TestCachedDebianFailureLeavesNoEntry(t *testing.T) {
	requireTool(t, "mkfs.ext4")
	dir := t.TempDir()
	fake := writeScript(t, dir, `echo 'E: Unable to locate package nosuch' >&2; exit 1`)
	cache := filepath.Join(dir, "cache")
	opts := DebianOptions{Packages: []string{"nosuch"}}
	_, err := fakeTools(fake).cachedDebian(t.Context(), cache, opts, nil)
	if err == nil || !strings.Contains(err.Error(), "has no package nosuch") {
		t.Fatalf("error: %v", err)
	}
	if names := dirNames(t, cache); strings.Join(names, " ") != opts.RecipeKey()+".lock" {
		t.Fatalf("cache holds %v", names)
	}
}

func TestLockFileWaitsAndCancels(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	unlock, err := lockFile(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := lockFile(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock: %v", err)
	}
	unlock()
	unlock2, err := lockFile(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	unlock2()
}

func TestParseMountsUnder(t *testing.T) {
	info := []byte(`22 1 0:21 / / rw - ext4 /dev/vda rw
30 22 0:5 / /w/root/dev rw - devtmpfs udev rw
31 30 0:5 / /w/root/dev/pts rw - devpts devpts rw
32 22 0:6 / /w/root\040x/sys rw - sysfs sysfs rw
33 22 0:6 / /w/rootfs rw - sysfs sysfs rw
`)
	if got := parseMountsUnder(info, "/w/root"); strings.Join(got, ",") != "/w/root/dev/pts,/w/root/dev" {
		t.Errorf("under /w/root: %v", got)
	}
	if got := parseMountsUnder(info, "/w/root x"); strings.Join(got, ",") != "/w/root x/sys" {
		t.Errorf("under /w/root x: %v", got)
	}
}

func TestRootfsGeometry(t *testing.T) {
	size, inodes := rootfs.Geometry(300<<20, 15000, rootfs.MinImageSize)
	if size != 1<<30 || inodes != (1<<30)/16384 {
		t.Errorf("small tree: %d bytes, %d inodes", size, inodes)
	}
	size, inodes = rootfs.Geometry(4<<30, 2_000_000, rootfs.MinImageSize)
	if size < (4<<30)*6/5 || size%(1<<20) != 0 || inodes < 2_500_000 {
		t.Errorf("big tree: %d bytes, %d inodes", size, inodes)
	}
}

func TestIsBzImage(t *testing.T) {
	b := make([]byte, 0x300)
	if isBzImage(b) {
		t.Fatal("zeros are a bzImage")
	}
	copy(b[0x202:], "HdrS")
	if !isBzImage(b) {
		t.Fatal("HdrS not recognised")
	}
}

// --- helpers ---

// writeScript writes a fake mmdebstrap: body runs with $target set to the
// tree directory (mmdebstrap's second-to-last argument).
func writeScript(t *testing.T, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "mmdebstrap")
	script := "#!/bin/sh\nfor a; do target=$prev; prev=$a; done\n" + body + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed (apt-get install e2fsprogs)", name)
	}
}

func assertEmptyDir(t *testing.T, dir string, except ...string) {
	t.Helper()
	for _, n := range dirNames(t, dir) {
		if !contains(except, n) {
			t.Errorf("%s left in %s", n, dir)
		}
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func debugfs(t *testing.T, img, request string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", request, img).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", request, err)
	}
	return string(out)
}

// ext4Super reads an ext4 superblock's magic, label and journal flag.
func ext4Super(t *testing.T, img string) (magic uint16, label string, journal bool) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil {
		t.Fatal(err)
	}
	magic = binary.LittleEndian.Uint16(sb[0x38:])
	label = strings.TrimRight(string(sb[0x78:0x88]), "\x00")
	journal = binary.LittleEndian.Uint32(sb[0x5c:])&0x4 != 0
	return magic, label, journal
}

// assertArtifacts checks what every build must produce.
func assertArtifacts(t *testing.T, art Artifacts) {
	t.Helper()
	k, err := os.ReadFile(art.Kernel)
	if err != nil || !isBzImage(k) {
		t.Errorf("kernel %s is not a bzImage (%v)", art.Kernel, err)
	}
	if _, err := os.Stat(filepath.Join(art.ModulesDir, "modules.dep")); err != nil {
		t.Errorf("modules: %v", err)
	}
	var virtio string
	_ = filepath.WalkDir(art.ModulesDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), "virtio_blk.ko") {
			virtio = p
		}
		return nil
	})
	if virtio == "" {
		t.Errorf("no virtio_blk.ko* under %s", art.ModulesDir)
	}
	magic, label, journal := ext4Super(t, art.Rootfs)
	if magic != 0xEF53 || label != "banger-root" || journal {
		t.Errorf("rootfs superblock: magic %#x label %q journal %v", magic, label, journal)
	}
	if d, err := fileDigest(art.Rootfs); err != nil || d != art.Digest || !strings.HasPrefix(d, "sha256:") {
		t.Errorf("digest %s, file %s (%v)", art.Digest, d, err)
	}
	size, err := apparentSize(filepath.Dir(art.Rootfs))
	if err != nil {
		t.Fatal(err)
	}
	if manifest, err := os.Stat(filepath.Join(filepath.Dir(art.Rootfs), cacheManifest)); err == nil {
		size -= manifest.Size()
	}
	if art.SizeBytes != size {
		t.Errorf("SizeBytes %d, files total %d", art.SizeBytes, size)
	}
}
