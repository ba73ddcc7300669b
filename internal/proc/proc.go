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

// TapsInUse returns the names of tun/tap interfaces that some process
// holds open (the kernel lists the interface as "iff:" in the fdinfo of a
// /dev/net/tun descriptor). A tap in this set belongs to a live VMM, even
// one whose daemon died before it could record the VM's handles.
func TapsInUse() map[string]bool {
	out := map[string]bool{}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		dir := "/proc/" + p.Name() + "/fd"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if target, err := os.Readlink(dir + "/" + fd.Name()); err != nil || target != "/dev/net/tun" {
				continue
			}
			b, err := os.ReadFile("/proc/" + p.Name() + "/fdinfo/" + fd.Name())
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				if name, ok := strings.CutPrefix(line, "iff:"); ok {
					out[strings.TrimSpace(name)] = true
				}
			}
		}
	}
	return out
}
