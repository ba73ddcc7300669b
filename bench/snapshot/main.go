// Command snapshot measures snapshots: the median wall time of `banger vm
// snapshot` of a booted VM, of `banger vm restore` from it, and, as the
// baseline in the same run, of `banger vm start` of the stopped VM (a
// cold boot of the same VM to SSH), inside a network namespace the
// benchmark makes and removes.
//
//	CGO_ENABLED=0 go build -o /tmp/bin/ ./cmd/... && go run ./bench/snapshot -bin /tmp/bin -n 5
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/banger-dev/banger/bench/benchns"
)

func main() {
	bin := flag.String("bin", "/usr/local/bin", "directory holding banger, bangerd and banger-agent")
	n := flag.Int("n", 5, "runs per measurement")
	cache := flag.String("image-cache", "/var/cache/banger-test", "image cache dir (the debian-12 build is reused)")
	flag.Parse()
	var err error
	if !benchns.Inside() {
		err = benchns.Run("bgsnap")
	} else {
		err = measure(*bin, *n, *cache)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/snapshot:", err)
		os.Exit(1)
	}
}

func measure(bin string, n int, cache string) error {
	b, err := benchns.NewBanger(bin, "bgsnap", fmt.Sprintf("image_cache_dir = %q\ndefault_memory = \"512M\"\ndefault_disk = \"2G\"\noverlay_size = \"2G\"\n", cache))
	if err != nil {
		return err
	}
	defer b.Close()
	if _, err := b.Run("vm", "create", "s"); err != nil {
		return err
	}
	defer func() { _, _ = b.Run("vm", "delete", "--force", "s") }()
	timed := func(args ...string) (time.Duration, error) {
		start := time.Now()
		_, err := b.Run(args...)
		return time.Since(start), err
	}
	var snaps, restores, restarts []time.Duration // restarts: cold starts
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("s%d", i)
		d, err := timed("vm", "snapshot", "s", "--name", name)
		if err != nil {
			return err
		}
		snaps = append(snaps, d)
		if d, err = timed("vm", "restore", "s", name); err != nil {
			return err
		}
		restores = append(restores, d)
		if _, err := b.Run("vm", "stop", "s"); err != nil {
			return err
		}
		if d, err = timed("vm", "start", "s"); err != nil {
			return err
		}
		restarts = append(restarts, d)
		if _, err := b.Run("vm", "snapshot", "delete", "s", name); err != nil {
			return err
		}
	}
	ms, mr, mc := benchns.Median(snaps), benchns.Median(restores), benchns.Median(restarts)
	fmt.Printf("banger vm snapshot   median %6.2fs  (runs: %s)\n", ms.Seconds(), benchns.List(snaps))
	fmt.Printf("banger vm restore    median %6.2fs  (runs: %s)\n", mr.Seconds(), benchns.List(restores))
	fmt.Printf("banger vm start      median %6.2fs  (runs: %s)  baseline: a cold boot of the same vm\n", mc.Seconds(), benchns.List(restarts))
	fmt.Printf("restore / cold start %.2f\n", mr.Seconds()/mc.Seconds())
	return nil
}
