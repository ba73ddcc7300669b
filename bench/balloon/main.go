// Command balloon measures what free page reporting gives back: the host
// RSS of an idle VM's VMM after the guest touched and freed memory (a
// build's worth, in tmpfs), with the guest's virtio_balloon driver loaded
// (banger's default) and, as the baseline in the same run and the same
// VM, after `rmmod virtio_balloon`, inside a network namespace the
// benchmark makes and removes.
//
//	CGO_ENABLED=0 go build -o /tmp/bin/ ./cmd/... && go run ./bench/balloon -bin /tmp/bin
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/banger-dev/banger/bench/benchns"
)

func main() {
	bin := flag.String("bin", "/usr/local/bin", "directory holding banger, bangerd and banger-agent")
	cache := flag.String("image-cache", "/var/cache/banger-test", "image cache dir (the debian-12 build is reused)")
	memory := flag.String("memory", "1536M", "the VM's memory")
	touch := flag.Int("touch-mib", 700, "MiB the guest writes to tmpfs and deletes")
	settle := flag.Duration("settle", 20*time.Second, "how long the VM idles before RSS is read")
	flag.Parse()
	var err error
	if !benchns.Inside() {
		err = benchns.Run("bgballoon")
	} else {
		err = measure(*bin, *cache, *memory, *touch, *settle)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/balloon:", err)
		os.Exit(1)
	}
}

type bench struct{ *benchns.Banger }

// rss is the VMM's resident memory in MiB, from `vm stats --json`.
func (b *bench) rss() (float64, error) {
	out, err := b.Run("vm", "stats", "vm", "--json")
	if err != nil {
		return 0, err
	}
	var st struct {
		RSS int64 `json:"memory_rss_bytes"`
	}
	i := strings.Index(out, "{")
	if i < 0 {
		return 0, fmt.Errorf("reading vm stats: %q", out)
	}
	if err := json.Unmarshal([]byte(out[i:]), &st); err != nil {
		return 0, fmt.Errorf("reading vm stats: %q: %w", out, err)
	}
	return float64(st.RSS) / (1 << 20), nil
}

// cycle has the guest write and delete touch MiB in tmpfs, then idles and
// reads the RSS.
func (b *bench) cycle(touch int, settle time.Duration) (float64, error) {
	script := fmt.Sprintf("dd if=/dev/zero of=/dev/shm/fill bs=1M count=%d status=none; rm /dev/shm/fill; sync", touch)
	if _, err := b.Run("vm", "ssh", "vm", "--", "sh", "-c", script); err != nil {
		return 0, err
	}
	time.Sleep(settle)
	return b.rss()
}

func measure(bin, cache, memory string, touch int, settle time.Duration) error {
	bb, err := benchns.NewBanger(bin, "bgballoon", fmt.Sprintf("image_cache_dir = %q\ndefault_disk = \"2G\"\noverlay_size = \"2G\"\n", cache))
	if err != nil {
		return err
	}
	defer bb.Close()
	b := &bench{bb}
	// Cold: the first boot of an image would otherwise leave a template,
	// and VMs of a template's lineage run without free page reporting.
	if _, err := b.Run("vm", "create", "vm", "--memory", memory, "--cold"); err != nil {
		return err
	}
	defer func() { _, _ = b.Run("vm", "delete", "--force", "vm") }()
	time.Sleep(settle)
	idle, err := b.rss()
	if err != nil {
		return err
	}
	with, err := b.cycle(touch, settle)
	if err != nil {
		return err
	}
	if _, err := b.Run("vm", "ssh", "vm", "--", "rmmod", "virtio_balloon"); err != nil {
		return err
	}
	without, err := b.cycle(touch, settle)
	if err != nil {
		return err
	}
	fmt.Printf("vm of %s, guest wrote and freed %d MiB, then idled %s\n", memory, touch, settle)
	fmt.Printf("host RSS idle after boot                     %7.0f MiB\n", idle)
	fmt.Printf("host RSS with free page reporting (banger)   %7.0f MiB\n", with)
	fmt.Printf("host RSS without it (rmmod virtio_balloon)   %7.0f MiB  (baseline)\n", without)
	fmt.Printf("given back: %.0f MiB (%.0f%% of the baseline)\n", without-with, (without-with)/without*100)
	return nil
}
