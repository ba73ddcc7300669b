// Package benchns runs a benchmark program inside a network namespace it
// makes for the purpose and removes afterwards, so that every bridge, tap
// and guest address the benchmark's daemon creates lives there.
package benchns

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/host/run"
)

const env = "BANGER_BENCH_NETNS"

// Inside reports whether this process is the copy running in the namespace.
func Inside() bool { return os.Getenv(env) != "" }

// Run makes a namespace named prefix-PID, runs this program again inside
// it with the same arguments and its output on stdout, and removes the
// namespace.
func Run(prefix string) error {
	ctx := context.Background()
	ns := fmt.Sprintf("%s-%d", prefix, os.Getpid())
	if err := run.Run(ctx, []string{"ip", "netns", "add", ns}); err != nil {
		return err
	}
	defer func() { _ = run.Run(ctx, []string{"ip", "netns", "del", ns}) }()
	if err := run.Run(ctx, []string{"ip", "-n", ns, "link", "set", "lo", "up"}); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	return run.Run(ctx, append([]string{"ip", "netns", "exec", ns, self}, os.Args[1:]...),
		run.Env(env+"="+ns), run.Stdout(os.Stdout))
}

// Median is the middle of the durations (the upper one of an even count).
func Median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// List renders durations in seconds, for the runs column.
func List(d []time.Duration) string {
	parts := make([]string, len(d))
	for i, x := range d {
		parts[i] = fmt.Sprintf("%.2f", x.Seconds())
	}
	return strings.Join(parts, " ")
}

// Banger is a benchmark's own banger: a temporary directory holding its
// state dir, socket and config file, so nothing touches the host's.
type Banger struct {
	Bin, Dir, State string
	// Env is added to the environment of every banger command.
	Env []string
}

// NewBanger makes the directory (named after prefix) and writes config
// there. Close stops the daemon and removes it all.
func NewBanger(bin, prefix, config string) (*Banger, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	b := &Banger{Bin: bin, Dir: dir, State: filepath.Join(dir, "state")}
	if err := os.WriteFile(b.config(), []byte(config), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return b, nil
}

func (b *Banger) config() string { return filepath.Join(b.Dir, "config.toml") }

// Argv is the banger command line for args.
func (b *Banger) Argv(args ...string) []string {
	return append([]string{filepath.Join(b.Bin, "banger"), "--socket", filepath.Join(b.Dir, "s.sock"),
		"--state-dir", b.State, "--config", b.config()}, args...)
}

// Run runs banger with args and returns its output.
func (b *Banger) Run(args ...string) (string, error) {
	out, err := run.Output(context.Background(), b.Argv(args...), run.Env(b.Env...))
	return string(out), err
}

// Close stops the daemon and removes the directory.
func (b *Banger) Close() {
	_, _ = b.Run("daemon", "stop")
	os.RemoveAll(b.Dir)
}
