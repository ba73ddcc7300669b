// Command clock measures how far a guest's clock strays from the host's
// over a long run under load: two VMs, both vCPUs of each busy, their
// clocks sampled every interval. One is kept on the host's clock by banger
// (the daemon's exchange every 30 s); the other is the baseline, measured
// in the same run: its agent is stopped after boot, so its clock runs free
// from the boot-time setting. Inside a network namespace the benchmark
// makes and removes.
//
//	CGO_ENABLED=0 go build -o /tmp/bin/ ./cmd/... && go run ./bench/clock -bin /tmp/bin -for 10m
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/banger-dev/banger/bench/benchns"
	"github.com/banger-dev/banger/internal/clockskew"
	"github.com/banger-dev/banger/internal/host/run"
)

func main() {
	bin := flag.String("bin", "/usr/local/bin", "directory holding banger, bangerd and banger-agent")
	cache := flag.String("image-cache", "/var/cache/banger-test", "image cache dir (the debian-12 build is reused)")
	total := flag.Duration("for", 10*time.Minute, "how long to run under load")
	every := flag.Duration("every", time.Minute, "how often to sample both clocks")
	flag.Parse()
	var err error
	if !benchns.Inside() {
		err = benchns.Run("bgclock")
	} else {
		err = measure(*bin, *cache, *total, *every)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/clock:", err)
		os.Exit(1)
	}
}

type bench struct{ *benchns.Banger }

// skew samples vm's clock over a fresh SSH session.
func (b *bench) skew(vm string) (time.Duration, time.Duration, error) {
	argv := b.Argv(append([]string{"vm", "ssh", vm, "--"}, clockskew.GuestCommand...)...)
	inR, inW, err := os.Pipe()
	if err != nil {
		return 0, 0, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return 0, 0, err
	}
	p, err := run.Spawn(argv, inR, outW, os.Stderr)
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return 0, 0, err
	}
	defer func() { inW.Close(); _, _ = p.Wait(); outR.Close() }()
	return clockskew.Measure(inW, bufio.NewReader(outR), 20)
}

const load = `for i in 1 2; do nohup sh -c 'while :; do :; done' >/dev/null 2>&1 & done`

func measure(bin, cache string, total, every time.Duration) error {
	bb, err := benchns.NewBanger(bin, "bgclock", fmt.Sprintf("image_cache_dir = %q\ndefault_memory = \"512M\"\ndefault_disk = \"2G\"\noverlay_size = \"2G\"\n", cache))
	if err != nil {
		return err
	}
	defer bb.Close()
	b := &bench{bb}
	for _, vm := range []string{"kept", "free"} {
		if _, err := b.Run("vm", "create", vm); err != nil {
			return err
		}
		defer func() { _, _ = b.Run("vm", "delete", "--force", vm) }()
	}
	// The baseline's agent stops answering the daemon's clock exchanges;
	// commands still run (SSH, each through its own exec helper).
	if _, err := b.Run("vm", "ssh", "free", "--", "sh", "-c", "kill -STOP $(pgrep -f '^banger-agent serve')"); err != nil {
		return err
	}
	for _, vm := range []string{"kept", "free"} {
		if _, err := b.Run("vm", "ssh", vm, "--", "sh", "-c", load); err != nil {
			return err
		}
	}
	fmt.Printf("two VMs, both vCPUs of each busy; clocks sampled every %s for %s\n", every, total)
	fmt.Printf("%8s  %22s  %22s\n", "elapsed", "kept by banger", "free (baseline)")
	var worstKept, worstFree time.Duration
	start := time.Now()
	for time.Since(start) < total {
		time.Sleep(every)
		sk, bk, err := b.skew("kept")
		if err != nil {
			return err
		}
		sf, bf, err := b.skew("free")
		if err != nil {
			return err
		}
		worstKept, worstFree = max(worstKept, sk.Abs()+bk), max(worstFree, sf.Abs()+bf)
		fmt.Printf("%8s  %+12.1f ms ±%5.1f  %+12.1f ms ±%5.1f\n", time.Since(start).Round(time.Second),
			ms(sk), ms(bk), ms(sf), ms(bf))
	}
	fmt.Printf("worst |skew| + bound: kept %.1f ms, free %.1f ms (baseline)\n", ms(worstKept), ms(worstFree))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
