package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DaemonOptions say how to start bangerd when it is not running.
type DaemonOptions struct {
	// Bangerd is the daemon binary; empty means "bangerd" beside the running
	// executable, else on PATH.
	Bangerd    string
	StateDir   string
	ConfigPath string
	// Timeout bounds the wait for the new daemon to answer.
	Timeout time.Duration
}

// StartDaemon launches bangerd detached (its own session, output appended
// to its log file) on c's socket, and waits until it answers. It uses
// os.StartProcess rather than a command runner: this is a launch, not a
// command whose output banger reads.
func (c *Client) StartDaemon(ctx context.Context, o DaemonOptions) error {
	bin, err := findBangerd(o.Bangerd)
	if err != nil {
		return err
	}
	if o.Timeout == 0 {
		o.Timeout = 15 * time.Second
	}
	if err := os.MkdirAll(o.StateDir, 0o750); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	logPath := filepath.Join(o.StateDir, "bangerd.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("opening daemon log: %w", err)
	}
	defer logf.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("opening %s: %w", os.DevNull, err)
	}
	defer null.Close()
	before, _ := os.Stat(logPath)

	argv := []string{bin, "--background", "--socket", c.Socket, "--state-dir", o.StateDir}
	if o.ConfigPath != "" {
		argv = append(argv, "--config", o.ConfigPath)
	}
	proc, err := os.StartProcess(bin, argv, &os.ProcAttr{
		Files: []*os.File{null, null, logf},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	exited := make(chan *os.ProcessState, 1)
	go func() {
		st, _ := proc.Wait()
		exited <- st
	}()

	deadline := time.NewTimer(o.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := c.Status(ctx)
		if err == nil || !errors.Is(err, ErrNotRunning) {
			// Answering at all, even with a permission error, means it runs.
			return err
		}
		select {
		case st := <-exited:
			return fmt.Errorf("bangerd exited during start-up (%s): %s", st, logTail(logPath, before))
		case <-deadline.C:
			return fmt.Errorf("bangerd did not answer on %s within %s; see %s", c.Socket, o.Timeout, logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// findBangerd resolves the daemon binary without a shell.
func findBangerd(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if self, err := os.Executable(); err == nil {
		cand := filepath.Join(filepath.Dir(self), "bangerd")
		if isExecutable(cand) {
			return cand, nil
		}
	}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" {
			continue
		}
		if cand := filepath.Join(dir, "bangerd"); isExecutable(cand) {
			return cand, nil
		}
	}
	return "", errors.New("cannot find the bangerd binary beside banger or on PATH; install both (see README.md)")
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// logTail returns the last lines the daemon wrote to its log in this start.
func logTail(path string, before os.FileInfo) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "see " + path
	}
	if before != nil && int64(len(b)) >= before.Size() {
		b = b[before.Size():]
	}
	lines := strings.Split(strings.TrimSpace(string(bytes.ToValidUTF8(b, nil))), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return "no output; see " + path
	}
	return strings.Join(lines, "\n")
}
