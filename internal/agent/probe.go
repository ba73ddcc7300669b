package agent

import (
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ProbeParam on the kernel command line turns /init into the KVM probe's
// payload (see internal/host/kvmprobe): print ProbeMarker and power off.
const ProbeParam = "banger.probe=1"

// ProbeMarker is the line the probe writes to the console once the guest
// kernel has come far enough to run userspace. internal/host/kvmprobe
// looks for the same string.
const ProbeMarker = "BANGER-KVM-PROBE-OK"

// ProbeIfAsked runs as PID 1 before Init. When the kernel command line
// holds ProbeParam it writes ProbeMarker to the console and powers off,
// never returning; otherwise it leaves /proc as it found it and returns.
func ProbeIfAsked() {
	mounted := false
	if err := os.MkdirAll("/proc", 0o555); err == nil {
		mounted = unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "") == nil
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	if !probeRequested(string(cmdline)) {
		if mounted {
			_ = unix.Unmount("/proc", 0)
		}
		return
	}
	writeMarker()
	powerOff(newLogger(os.Stderr))
}

// probeRequested reports whether cmdline holds ProbeParam as a word.
func probeRequested(cmdline string) bool {
	for _, f := range strings.Fields(cmdline) {
		if f == ProbeParam {
			return true
		}
	}
	return false
}

// writeMarker writes ProbeMarker on a line of its own to the console,
// falling back to the serial port and then to standard error (which the
// kernel points at the console for /init anyway).
func writeMarker() {
	line := []byte("\n" + ProbeMarker + "\n")
	for _, dev := range []string{"/dev/console", "/dev/ttyS0"} {
		f, err := os.OpenFile(dev, os.O_WRONLY|unix.O_NOCTTY, 0)
		if err != nil {
			continue
		}
		_, err = f.Write(line)
		f.Close()
		if err == nil {
			return
		}
	}
	_, _ = os.Stderr.Write(line)
}
