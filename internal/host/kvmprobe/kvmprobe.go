// Package kvmprobe decides whether KVM can run banger's guests on this host
// by what actually happens, never by /dev/kvm existing: it boots the guest
// kernel under `qemu-system-x86_64 -accel kvm` with a tiny initramfs whose
// /init (banger-agent in probe mode) prints a marker line and powers off.
// KVM is usable only if that marker reaches the serial log in time.
//
// Some KVMs are known not to run ordinary guests and are refused without a
// boot: the paravirtual kvm_pvm module can run a few long-mode instructions
// yet hangs a stock Debian kernel in its real-mode setup.
//
// A boot verdict is cached in a JSON file keyed by everything it depends
// on (the kernel file, QEMU's version, /dev/kvm's device number and the
// host kernel release), so the daemon boots the probe once per change.
package kvmprobe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/host/run"
	"github.com/banger-dev/banger/internal/initramfs"

	"github.com/banger-dev/banger/internal/atomicfile"
)

// Marker is the line the probe's /init writes to the console (the agent's
// ProbeMarker; the two must match). It never appears on the kernel command
// line, which the kernel echoes to the same log.
const Marker = "BANGER-KVM-PROBE-OK"

// Cmdline is the probe kernel's command line; banger.probe=1 puts the
// agent in probe mode.
const Cmdline = "console=ttyS0 panic=-1 banger.probe=1"

// DefaultTimeout bounds the probe boot under KVM. A kernel that reaches
// userspace under a working KVM does so in about a second.
const DefaultTimeout = 8 * time.Second

// QEMU is the emulator the probe runs.
const QEMU = "qemu-system-x86_64"

// Cause classifies why KVM is not usable.
type Cause string

// Causes of an unusable verdict; "" when KVM is usable.
const (
	CauseNoDevice     Cause = "no-device"    // no /dev/kvm
	CauseNoAccess     Cause = "no-access"    // /dev/kvm cannot be opened read-write
	CauseIncompatible Cause = "incompatible" // a KVM known not to run ordinary guests
	CauseBootFailed   Cause = "boot-failed"  // the probe guest did not print its marker in time
	CauseNotProbed    Cause = "not-probed"   // the probe could not run (no kernel, no QEMU, ...)
)

// Verdict says whether KVM can run guests here, and why.
type Verdict struct {
	Usable  bool      `json:"usable"`
	Reason  string    `json:"reason"`
	Checked time.Time `json:"checked"`
	// Key identifies what a boot verdict depends on; empty for verdicts
	// decided without a boot (they are never cached).
	Key   string `json:"key,omitempty"`
	Cause Cause  `json:"cause,omitempty"`
}

// Reasons for the verdicts decided without a boot.
const (
	ReasonPVM = "KVM present but cannot run standard guests (paravirtual kvm_pvm)"
)

// host is what the probe reads and runs; tests replace parts of it.
type host struct {
	sysfs   string // normally /sys
	devKVM  string // normally /dev/kvm
	qemu    string // the QEMU binary
	timeout time.Duration
	now     func() time.Time
	// boot runs the probe guest and reports whether the marker appeared.
	boot func(ctx context.Context, b bootSpec) (bool, string, error)
	// qemuVersion is the first line of `qemu --version`.
	qemuVersion func(ctx context.Context, qemu string) (string, error)
	release     func() string
}

func defaultHost() host {
	return host{
		sysfs: "/sys", devKVM: "/dev/kvm", qemu: QEMU, timeout: DefaultTimeout, now: time.Now,
		boot: bootGuest, qemuVersion: qemuVersion, release: hostRelease,
	}
}

// probeMu makes concurrent Probe calls in one process take turns, so the
// second one finds the first one's verdict in the cache instead of booting
// a second probe guest.
var probeMu sync.Mutex

// Probe decides whether KVM can run kernel. Without /dev/kvm, or without
// read-write access to it, KVM is not usable (the reason says which); a KVM
// known not to run ordinary guests (kvm_pvm loaded) is not usable at once.
// Otherwise kernel is booted under QEMU with KVM and an initramfs holding
// only the agent at agentPath; KVM is usable iff the guest prints Marker
// within DefaultTimeout. A boot verdict is cached in cacheFile (JSON) and
// reused while its key matches; an empty cacheFile disables the cache.
//
// The returned verdict is always filled in: when the probe cannot be
// carried out (no kernel, no QEMU, no agent), Usable is false, Cause is
// CauseNotProbed, and the error says what went wrong.
func Probe(ctx context.Context, kernel, agentPath, cacheFile string) (Verdict, error) {
	return defaultHost().probe(ctx, kernel, agentPath, cacheFile)
}

func (h host) probe(ctx context.Context, kernel, agentPath, cacheFile string) (Verdict, error) {
	if v, decided := h.precheck(); decided {
		return v, nil
	}
	notProbed := func(err error) (Verdict, error) {
		return Verdict{Reason: "KVM not probed: " + err.Error(), Checked: h.now(), Cause: CauseNotProbed}, err
	}
	if kernel == "" {
		return notProbed(errors.New("no guest kernel to boot yet"))
	}
	qemu, err := run.LookPath(h.qemu)
	if err != nil {
		return notProbed(fmt.Errorf("%s not found", h.qemu))
	}

	probeMu.Lock()
	defer probeMu.Unlock()
	key, err := h.key(ctx, kernel, qemu)
	if err != nil {
		return notProbed(err)
	}
	if cacheFile != "" {
		if v, ok := readCache(cacheFile, key); ok {
			return v, nil
		}
	}
	start := time.Now()
	ok, detail, err := h.boot(ctx, bootSpec{qemu: qemu, accel: "kvm", kernel: kernel, agent: agentPath, timeout: h.timeout})
	if err != nil {
		return notProbed(err)
	}
	v := Verdict{Usable: ok, Checked: h.now(), Key: key}
	if ok {
		v.Reason = fmt.Sprintf("a probe guest booted under KVM to userspace in %.1fs", time.Since(start).Seconds())
	} else {
		v.Cause = CauseBootFailed
		v.Reason = "KVM present but a probe guest did not boot under it: " + detail
	}
	if cacheFile != "" {
		if err := writeCache(cacheFile, v); err != nil {
			return v, err
		}
	}
	return v, nil
}

// precheck decides without a boot when it can: no device, no access, or a
// KVM known not to run ordinary guests.
func (h host) precheck() (Verdict, bool) {
	no := func(c Cause, reason string) (Verdict, bool) {
		return Verdict{Reason: reason, Checked: h.now(), Cause: c}, true
	}
	f, err := os.OpenFile(h.devKVM, os.O_RDWR, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return no(CauseNoDevice, h.devKVM+" does not exist (no KVM: virtualization disabled, or kvm_intel/kvm_amd not loaded)")
	case errors.Is(err, fs.ErrPermission):
		return no(CauseNoAccess, fmt.Sprintf("%s exists but this process (uid %d) cannot open it read-write", h.devKVM, os.Geteuid()))
	case err != nil:
		return no(CauseNoAccess, fmt.Sprintf("opening %s: %v", h.devKVM, err))
	}
	f.Close()
	if pvm(h.sysfs) {
		return no(CauseIncompatible, ReasonPVM)
	}
	return Verdict{}, false
}

// pvm reports whether the paravirtual KVM module is loaded.
func pvm(sysfs string) bool {
	_, err := os.Stat(filepath.Join(sysfs, "module", "kvm_pvm"))
	return err == nil
}

// key names what a boot verdict depends on.
func (h host) key(ctx context.Context, kernel, qemu string) (string, error) {
	kst, err := os.Stat(kernel)
	if err != nil {
		return "", fmt.Errorf("reading the guest kernel: %w", err)
	}
	abs, err := filepath.Abs(kernel)
	if err != nil {
		return "", fmt.Errorf("reading the guest kernel: %w", err)
	}
	var dst unix.Stat_t
	if err := unix.Stat(h.devKVM, &dst); err != nil {
		return "", fmt.Errorf("reading %s: %w", h.devKVM, err)
	}
	ver, err := h.qemuVersion(ctx, qemu)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("kernel=%s size=%d mtime=%d; qemu=%s; kvm-rdev=%d:%d; host=%s",
		abs, kst.Size(), kst.ModTime().UnixNano(), ver, unix.Major(dst.Rdev), unix.Minor(dst.Rdev), h.release()), nil
}

func qemuVersion(ctx context.Context, qemu string) (string, error) {
	out, err := run.Output(ctx, []string{qemu, "--version"})
	if err != nil {
		return "", fmt.Errorf("asking qemu its version: %w", err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line, nil
}

func hostRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// readCache returns the cached verdict when its key is key.
func readCache(file, key string) (Verdict, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return Verdict{}, false
	}
	var v Verdict
	if json.Unmarshal(b, &v) != nil || v.Key != key {
		return Verdict{}, false
	}
	return v, true
}

// writeCache stores v atomically.
func writeCache(file string, v Verdict) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the kvm verdict: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o750); err != nil {
		return fmt.Errorf("writing the kvm verdict cache: %w", err)
	}
	if err := atomicfile.WriteFile(file, append(b, '\n'), 0o640); err != nil {
		return fmt.Errorf("writing the kvm verdict cache: %w", err)
	}
	return nil
}

// bootSpec is one probe boot.
type bootSpec struct {
	qemu, accel, kernel, agent string
	timeout                    time.Duration
}

// args is the probe's QEMU command line.
func (b bootSpec) args(initrd, serialLog string) []string {
	cmdline := Cmdline
	args := []string{b.qemu, "-M", "microvm", "-accel", b.accel}
	if b.accel == "kvm" {
		args = append(args, "-cpu", "host")
	} else if khz := tscKHz(); khz > 0 {
		// Under TCG a microvm kernel can hang calibrating the TSC.
		cmdline += " tsc_early_khz=" + strconv.FormatInt(khz, 10)
	}
	return append(args,
		"-m", "256", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", b.kernel, "-initrd", initrd, "-append", cmdline,
		"-serial", "file:"+serialLog)
}

// bootGuest boots the probe guest and waits for Marker in its serial log.
// It reports false with a short description when the guest exits or the
// timeout passes first, and an error when the boot could not be attempted
// or ctx ended. QEMU is killed by PID and the temporary files removed.
func bootGuest(ctx context.Context, b bootSpec) (bool, string, error) {
	dir, err := os.MkdirTemp("", "banger-kvmprobe-")
	if err != nil {
		return false, "", fmt.Errorf("making the probe directory: %w", err)
	}
	defer os.RemoveAll(dir)
	initrd, serialLog := filepath.Join(dir, "initrd"), filepath.Join(dir, "serial.log")
	if err := writeInitrd(initrd, b.agent); err != nil {
		return false, "", err
	}
	stderr, err := os.Create(filepath.Join(dir, "qemu.err"))
	if err != nil {
		return false, "", fmt.Errorf("making the probe's log: %w", err)
	}
	defer stderr.Close()
	proc, err := run.Spawn(b.args(initrd, serialLog), nil, nil, stderr)
	if err != nil {
		return false, "", fmt.Errorf("starting the probe guest: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_, _ = proc.Wait()
		close(exited)
	}()
	kill := func() {
		_ = proc.Kill()
		<-exited
	}
	timeout := time.NewTimer(b.timeout)
	defer timeout.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if sawMarker(serialLog) {
				kill()
				return true, "", nil
			}
		case <-exited:
			if sawMarker(serialLog) {
				return true, "", nil
			}
			errOut, _ := os.ReadFile(stderr.Name())
			return false, fmt.Sprintf("qemu exited before the guest reached userspace: %s; serial log: %s",
				orNone(errOut), lastLine(serialLog)), nil
		case <-timeout.C:
			kill()
			if sawMarker(serialLog) {
				return true, "", nil
			}
			return false, fmt.Sprintf("no sign of userspace within %s (last console line: %s)", b.timeout, lastLine(serialLog)), nil
		case <-ctx.Done():
			kill()
			return false, "", ctx.Err()
		}
	}
}

func writeInitrd(path, agent string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing the probe initramfs: %w", err)
	}
	w := bufio.NewWriter(f)
	err = initramfs.BuildMinimal(w, agent)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("writing the probe initramfs: %w", cerr)
	}
	return err
}

// sawMarker reports whether the serial log holds Marker on a line.
func sawMarker(serialLog string) bool {
	b, err := os.ReadFile(serialLog)
	if err != nil {
		return false
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if string(bytes.TrimSpace(line)) == Marker {
			return true
		}
	}
	return false
}

// lastLine is the serial log's last non-empty line, quoted, for messages.
func lastLine(serialLog string) string {
	b, _ := os.ReadFile(serialLog)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if last == "" {
		return "none"
	}
	if len(last) > 200 {
		last = last[:200] + "…"
	}
	return strconv.Quote(last)
}

func orNone(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "no error output"
	}
	if len(s) > 500 {
		s = "…" + s[len(s)-500:]
	}
	return s
}

// tscKHz is the host's TSC frequency from /proc/cpuinfo, 0 when unknown.
func tscKHz() int64 {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "cpu MHz"); ok {
			_, v, _ := strings.Cut(rest, ":")
			if mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && mhz > 0 {
				return int64(mhz * 1000)
			}
		}
	}
	return 0
}
