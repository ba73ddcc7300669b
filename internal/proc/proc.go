// Package proc answers questions about processes from /proc: whether one
// has exited (a zombie counts), its command line. It imports only the
// standard library so the CLI and the drivers share one implementation.
package proc

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Exited reports whether pid has exited: gone, or a zombie awaiting its
// reaper (which may be a daemon that no longer runs).
func Exited(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] == "Z"
}

// WaitExit polls until pid has exited or ctx ends; it reports which.
func WaitExit(ctx context.Context, pid int) bool {
	for {
		if Exited(pid) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Cmdline returns a live process's argv, or nil when it has exited.
func Cmdline(pid int) []string {
	if pid <= 0 || Exited(pid) {
		return nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}
