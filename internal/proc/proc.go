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
	_, f, _ := ParseStat(b)
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
	return CmdlineIn("/proc", pid)
}

// CmdlineIn is the argv of process pid in the proc tree at root, or nil.
func CmdlineIn(root string, pid int) []string {
	b, err := os.ReadFile(root + "/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// TapsInUse returns the names of tun/tap interfaces that some process
// of this network namespace holds open (the kernel lists the interface as
// "iff:" in the fdinfo of a /dev/net/tun descriptor). A tap in this set
// belongs to a live VMM, even one whose daemon died before it could record
// the VM's handles. A tap of the same name in another namespace is
// another tap.
func TapsInUse() map[string]bool {
	out := map[string]bool{}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	self, _ := os.Readlink("/proc/self/ns/net")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		if ns, err := os.Readlink("/proc/" + p.Name() + "/ns/net"); err != nil || ns != self {
			continue
		}
		eachFD(p.Name(), func(fd, target string) bool {
			if target != "/dev/net/tun" {
				return true
			}
			b, err := os.ReadFile("/proc/" + p.Name() + "/fdinfo/" + fd)
			if err != nil {
				return true
			}
			for _, line := range strings.Split(string(b), "\n") {
				if name, ok := strings.CutPrefix(line, "iff:"); ok {
					out[strings.TrimSpace(name)] = true
				}
			}
			return true
		})
	}
	return out
}

// eachFD calls fn with each open descriptor of process pid and what it
// refers to (the target of its /proc link), until fn returns false.
func eachFD(pid string, fn func(fd, target string) bool) {
	dir := "/proc/" + pid + "/fd"
	fds, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, fd := range fds {
		if target, err := os.Readlink(dir + "/" + fd.Name()); err == nil && !fn(fd.Name(), target) {
			return
		}
	}
}

// FDs returns the /proc paths of process pid's descriptors whose target
// starts with prefix: opening one opens what the process holds (a memfd,
// say, which has no other name).
func FDs(pid int, prefix string) []string {
	var out []string
	id := strconv.Itoa(pid)
	eachFD(id, func(fd, target string) bool {
		if strings.HasPrefix(target, prefix) {
			out = append(out, "/proc/"+id+"/fd/"+fd)
		}
		return true
	})
	return out
}

// Alive reports whether pid runs: it exists and is not a zombie.
func Alive(pid int) bool { return pid > 0 && !Exited(pid) }

// Process is a process and its command line.
type Process struct {
	PID     int
	Cmdline string
}

// vmmNames are the programs that run banger's guests.
var vmmNames = []string{"qemu-system-x86_64", "firecracker", "jailer"}

// VMMs lists the live VMM processes (QEMU, Firecracker, jailer) whose
// command line names a path under dir: a VM's directory identifies its
// VMM even when no handles file says which process it is.
func VMMs(dir string) []Process { return VMMsIn("/proc", dir) }

// VMMsIn is VMMs over a procfs mounted at root (tests use a fake one).
func VMMsIn(root, dir string) []Process {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	prefix := strings.TrimSuffix(dir, "/") + "/"
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		raw, err := os.ReadFile(root + "/" + e.Name() + "/cmdline")
		if err != nil || len(raw) == 0 {
			continue // gone, or a kernel thread
		}
		argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if !isVMM(argv[0]) || !mentions(argv[1:], prefix) {
			continue
		}
		if root == "/proc" && Exited(pid) {
			continue
		}
		out = append(out, Process{PID: pid, Cmdline: strings.Join(argv, " ")})
	}
	return out
}

func isVMM(arg0 string) bool {
	base := arg0[strings.LastIndexByte(arg0, '/')+1:]
	for _, n := range vmmNames {
		if base == n {
			return true
		}
	}
	return false
}

// mentions reports whether an argument holds a path under prefix, alone
// or inside a QEMU option list ("file=/state/...,format=raw").
func mentions(args []string, prefix string) bool {
	for _, a := range args {
		for i := 0; i < len(a); {
			j := strings.Index(a[i:], prefix)
			if j < 0 {
				break
			}
			if at := i + j; at == 0 || strings.ContainsRune("=,:", rune(a[at-1])) {
				return true
			}
			i += j + 1
		}
	}
	return false
}

// ParseStat splits a /proc/PID/stat line into the command name and the
// fields after it (state, ppid, ...). The name is parenthesised and may
// itself hold spaces and parentheses, so it ends at the last ')'.
func ParseStat(b []byte) (comm string, fields []string, ok bool) {
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return "", nil, false
	}
	return s[open+1 : closing], strings.Fields(s[closing+1:]), true
}

// Usage is a process's CPU time and resident memory.
type Usage struct {
	CPUSeconds float64
	RSSBytes   int64
}

// Stat reads pid's CPU time (user + system) and resident set size.
func Stat(pid int) (Usage, error) {
	var u Usage
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return u, err
	}
	// utime and stime are the 14th and 15th fields of the line, in clock
	// ticks (100 per second).
	_, f, _ := ParseStat(b)
	if len(f) > 12 {
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		u.CPUSeconds = float64(ut+st) / 100
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err == nil {
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				u.RSSBytes = kb * 1024
			}
		}
	}
	return u, nil
}
