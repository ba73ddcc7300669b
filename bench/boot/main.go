// Command boot measures banger's boots in one run, inside a network
// namespace it makes and removes: the median wall time of
// `banger vm run --rm -- true` started from the image's template (an
// instant VM) and booted cold (--cold), against a bare QEMU boot of the
// same kernel, initramfs and disks to a working SSH command; the floor
// under both, `banger vm ssh VM -- true` on a running VM; and the wall
// time of `banger vm fork VM F --count 4`.
//
//	CGO_ENABLED=0 go build -o /tmp/bin/ ./cmd/... && go run ./bench/boot -bin /tmp/bin -n 5
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/bench/benchns"
	"github.com/banger-dev/banger/internal/guestssh"
	"github.com/banger-dev/banger/internal/host/run"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/paths"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/vmm/qemu"
)

func main() {
	bin := flag.String("bin", "/usr/local/bin", "directory holding banger, bangerd and banger-agent")
	n := flag.Int("n", 5, "boots per measurement")
	cache := flag.String("image-cache", "/var/cache/banger-test", "image cache dir (the debian-12 build is reused)")
	flag.Parse()
	var err error
	if !benchns.Inside() {
		err = benchns.Run("bgbench")
	} else {
		err = measure(*bin, *n, *cache)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/boot:", err)
		os.Exit(1)
	}
}

type bench struct{ *benchns.Banger }

func measure(bin string, n int, cache string) error {
	bb, err := benchns.NewBanger(bin, "bgbench", fmt.Sprintf("image_cache_dir = %q\ndefault_memory = \"512M\"\ndefault_disk = \"2G\"\noverlay_size = \"2G\"\n", cache))
	if err != nil {
		return err
	}
	defer bb.Close()
	b := &bench{bb}

	// Warm-up: the image is published, the initramfs built and the
	// template left once, as any user's first run would; none counts.
	if _, err := b.Run("vm", "run", "--rm", "--", "true"); err != nil {
		return err
	}
	instant, err := b.times(n, "vm", "run", "--rm", "--", "true")
	if err != nil {
		return err
	}
	cold, err := b.times(n, "vm", "run", "--rm", "--cold", "--", "true")
	if err != nil {
		return err
	}
	if _, err := b.Run("vm", "create", "src"); err != nil {
		return err
	}
	floor, err := b.times(n, "vm", "ssh", "src", "--", "true")
	if err != nil {
		return err
	}
	var forks []time.Duration
	for i := 0; i < max(1, n/2); i++ {
		start := time.Now()
		if _, err := b.Run("vm", "fork", "src", "f", "--count", "4"); err != nil {
			return err
		}
		forks = append(forks, time.Since(start))
		for j := 1; j <= 4; j++ {
			if _, err := b.Run("vm", "delete", "--force", fmt.Sprintf("f-%d", j)); err != nil {
				return err
			}
		}
	}
	if _, err := b.Run("vm", "delete", "--force", "src"); err != nil {
		return err
	}

	bare, err := b.bareBoots(n)
	if err != nil {
		return err
	}
	mi, mc, mb, mf, mk := benchns.Median(instant), benchns.Median(cold), benchns.Median(bare), benchns.Median(floor), benchns.Median(forks)
	fmt.Printf("vm run --rm -- true, instant  median %6.2fs  (runs: %s)\n", mi.Seconds(), benchns.List(instant))
	fmt.Printf("vm run --rm --cold -- true    median %6.2fs  (runs: %s)\n", mc.Seconds(), benchns.List(cold))
	fmt.Printf("bare qemu boot to ssh true    median %6.2fs  (runs: %s)\n", mb.Seconds(), benchns.List(bare))
	fmt.Printf("vm ssh VM -- true (running)   median %6.2fs  (runs: %s)\n", mf.Seconds(), benchns.List(floor))
	fmt.Printf("vm fork VM F --count 4        median %6.2fs  (%.2fs per copy; runs: %s)\n", mk.Seconds(), mk.Seconds()/4, benchns.List(forks))
	fmt.Printf("instant/cold %.2f, cold/bare %.2f (banger adds %+.0f%% to a cold boot)\n", mi.Seconds()/mc.Seconds(), mc.Seconds()/mb.Seconds(), (mc.Seconds()/mb.Seconds()-1)*100)
	return nil
}

// times runs a banger command n times and returns each wall time.
func (b *bench) times(n int, args ...string) ([]time.Duration, error) {
	var out []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		if _, err := b.Run(args...); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// bareBoots boots a stopped banger VM's exact disks, kernel and initramfs
// with QEMU directly (the same command line the driver uses, on a tap the
// benchmark makes) and times each until an SSH command succeeds.
func (b *bench) bareBoots(n int) ([]time.Duration, error) {
	if _, err := b.Run("vm", "create", "bare"); err != nil {
		return nil, err
	}
	out, err := b.Run("vm", "show", "bare", "--json")
	if err != nil {
		return nil, err
	}
	var v struct {
		ID, IP, MAC, Image string
		VCPUs              int   `json:"vcpus"`
		MemoryMiB          int64 `json:"memory_mib"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &v); err != nil {
		return nil, err
	}
	if _, err := b.Run("vm", "stop", "bare"); err != nil {
		return nil, err
	}
	defer func() { _, _ = b.Run("vm", "delete", "--force", "bare") }()
	defer func() { _ = run.Run(context.Background(), []string{"ip", "link", "del", "bgbenchtap"}) }()

	layout := paths.Layout{StateDir: b.State}
	initrds, _ := filepath.Glob(filepath.Join(layout.InitramfsDir(), "*.cpio"))
	if len(initrds) != 1 {
		return nil, fmt.Errorf("want one cached initramfs, found %v", initrds)
	}
	out, err = b.Run("image", "show", "--json", v.Image)
	if err != nil {
		return nil, err
	}
	var im struct {
		Kernel string `json:"kernel_path"`
		Rootfs string `json:"rootfs_path"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &im); err != nil {
		return nil, err
	}
	tap := "bgbenchtap"
	for _, argv := range [][]string{
		{"ip", "tuntap", "add", tap, "mode", "tap"},
		{"ip", "link", "set", tap, "master", "banger0", "up"},
	} {
		if err := run.Run(context.Background(), argv); err != nil {
			return nil, err
		}
	}
	vmDir := layout.VMDir(v.ID)
	spec := vmm.Spec{
		VM:  model.VM{VCPUs: v.VCPUs, MemoryMiB: v.MemoryMiB},
		Dir: vmDir, Kernel: im.Kernel, Initrd: initrds[0],
		Cmdline: "console=ttyS0 net.ifnames=0 panic=-1 rdinit=/init quiet loglevel=4 systemd.show_status=false",
		Disks: []vmm.Disk{
			{Path: im.Rootfs, ReadOnly: true},
			{Path: filepath.Join(vmDir, "upper.ext4")},
			{Path: filepath.Join(vmDir, "work.ext4")},
			{Path: filepath.Join(vmDir, "config.img"), ReadOnly: true},
		},
		Tap: tap, MAC: v.MAC, ConsoleLog: filepath.Join(b.Dir, "bare-console.log"),
		ControlSocket: filepath.Join(b.Dir, "bare-agent.sock"),
	}
	args := qemu.New("tcg").Args(spec)
	signer, err := guestssh.LoadOrCreateKey(layout.SSHKey())
	if err != nil {
		return nil, err
	}
	hostPub, err := os.ReadFile(filepath.Join(vmDir, "ssh_host_ed25519_key.pub"))
	if err != nil {
		return nil, err
	}
	var times []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		proc, err := run.Spawn(args, nil, nil, nil)
		if err != nil {
			return nil, err
		}
		err = b.waitSSH(v.IP, signer, string(hostPub))
		times = append(times, time.Since(start))
		_ = proc.Kill()
		_, _ = proc.Wait()
		if err != nil {
			return nil, err
		}
	}
	return times, nil
}

func (b *bench) waitSSH(ip string, signer ssh.Signer, hostPub string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return guestssh.WaitReady(ctx, net.JoinHostPort(ip, "22"), signer, hostPub)
}
