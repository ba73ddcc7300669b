// Package clockskew measures a guest's clock against the host's over one
// open command session (the e2e tests and bench/clock use it through
// `banger vm ssh`): the host writes a line, the guest answers with its
// clock, and the sample with the shortest round trip wins.
package clockskew

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// GuestCommand is what the guest runs: one clock reading (Unix
// nanoseconds) per line read.
var GuestCommand = []string{"sh", "-c", "while read x; do date +%s%N; done"}

// Measure takes samples readings through w and r and returns the skew
// (positive: the guest is ahead) of the reading with the shortest round
// trip, and its bound: half that round trip, since the guest read its
// clock somewhere in it.
func Measure(w io.Writer, r *bufio.Reader, samples int) (skew, bound time.Duration, err error) {
	bound = time.Hour
	for range samples {
		sent := time.Now()
		if _, err := fmt.Fprintln(w, "x"); err != nil {
			return 0, 0, fmt.Errorf("asking the guest for its clock: %w", err)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, 0, fmt.Errorf("reading the guest's clock: %w", err)
		}
		rtt := time.Since(sent)
		ns, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("the guest's clock: %q: %w", line, err)
		}
		if rtt/2 < bound {
			bound = rtt / 2
			skew = time.Duration(ns - sent.Add(rtt/2).UnixNano())
		}
	}
	return skew, bound, nil
}
