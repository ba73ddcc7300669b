// Package qemu is the QEMU driver: one qemu-system-x86_64 `-M microvm`
// process per VM, with a pidfile, a QMP socket, the serial console appended
// to the VM's log, and the agent's control channel on a virtio-serial port.
// It uses KVM when told KVM can run guests here, else TCG.
package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/guest"
	"github.com/banger-dev/banger/internal/host/run"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/proc"
	"github.com/banger-dev/banger/internal/vmm"
)

// Binary is the QEMU system emulator banger runs.
const Binary = "qemu-system-x86_64"

// Driver runs VMs under QEMU.
type Driver struct {
	// Accel is "tcg" or "kvm".
	Accel string
}

// New makes a driver with the given accelerator.
func New(accel string) *Driver { return &Driver{Accel: accel} }

// Name is "qemu".
func (d *Driver) Name() string { return "qemu" }

// Available checks that the QEMU binary is installed.
func (d *Driver) Available(context.Context) error {
	if _, err := run.LookPath(Binary); err != nil {
		return model.Errorf(model.ErrUnavailable, "no VM driver available: %s not found; install it with `apt-get install qemu-system-x86`", Binary)
	}
	return nil
}

func files(dir string) (pidfile, qmp, stderr string) {
	return filepath.Join(dir, "qemu.pid"), filepath.Join(dir, "qmp.sock"), filepath.Join(dir, "qemu.log")
}

// eventFiles are the second QMP monitor, which the daemon holds for the
// VM's events (one client per monitor: queries use the first), and where
// the daemon notes why the guest shut down.
func eventFiles(dir string) (sock, exit string) {
	return filepath.Join(dir, "qmp-events.sock"), filepath.Join(dir, "qemu.exit")
}

// Args is the QEMU command line for a cold boot of spec. Exported for
// tests and the benchmark, which boots the same guest by hand.
func (d *Driver) Args(spec vmm.Spec) []string {
	return d.args(spec, bootMemory(spec))
}

// args is the QEMU command line for spec with memory m.
func (d *Driver) args(spec vmm.Spec, m memory) []string {
	pidfile, qmp, _ := files(spec.Dir)
	events, _ := eventFiles(spec.Dir)
	// A guest reboot by triple fault: QEMU turns it into a reset request
	// (an exit, under -no-reboot) at once. The kernel's default, the ACPI
	// reset register and then the keyboard controller and BIOS paths,
	// left a TCG guest spinning after "reboot: Restarting system" now and
	// then, with QEMU never exiting (seen here under load).
	cmdline := spec.Cmdline + " reboot=t"
	accel := "kvm"
	if d.Accel != "kvm" {
		accel = "tcg"
		// Without a known TSC frequency about a third of microvm boots
		// under TCG hang calibrating it (measured here).
		if khz := tscKHz(); khz > 0 {
			cmdline += " tsc_early_khz=" + strconv.FormatInt(khz, 10)
		}
		// TCG's vCPUs fail the kernel's TSC synchronisation check, so the
		// guest marks the TSC unstable and keeps time with jiffies, which
		// drift by seconds a minute. The emulated TSC is the host's, which
		// is constant and shared.
		cmdline += " tsc=reliable"
	}
	args := []string{Binary,
		"-M", "microvm,acpi=on,pcie=off,rtc=on",
		"-accel", accel,
		"-smp", strconv.Itoa(spec.VM.VCPUs),
		"-m", strconv.FormatInt(spec.VM.MemoryMiB, 10),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", spec.Kernel,
		"-append", cmdline,
		"-chardev", "file,id=console,path=" + spec.ConsoleLog + ",append=on",
		"-serial", "chardev:console",
		"-qmp", "unix:" + qmp + ",server=on,wait=off",
		"-qmp", "unix:" + events + ",server=on,wait=off",
		"-pidfile", pidfile,
	}
	args = append(args, m.args(spec.VM.MemoryMiB)...)
	if accel == "kvm" {
		args = append(args, "-cpu", "host")
	}
	if spec.Initrd != "" {
		args = append(args, "-initrd", spec.Initrd)
	}
	for i, disk := range spec.Disks {
		drive := fmt.Sprintf("id=disk%d,file=%s,format=raw,if=none,discard=unmap", i, disk.Path)
		if disk.ReadOnly {
			drive = fmt.Sprintf("id=disk%d,file=%s,format=raw,if=none,readonly=on", i, disk.Path)
		}
		args = append(args, "-drive", drive, "-device", fmt.Sprintf("virtio-blk-device,drive=disk%d", i))
	}
	if spec.Tap != "" {
		args = append(args,
			"-netdev", "tap,id=net0,ifname="+spec.Tap+",script=no,downscript=no",
			"-device", "virtio-net-device,netdev=net0,mac="+spec.MAC)
	}
	// Free page reporting: the guest hands pages it freed back to the
	// host, so an idle VM does not keep holding what its boot touched
	// (not in a template's lineage: see memory).
	balloon := "virtio-balloon-device,free-page-reporting=on"
	if !m.reporting {
		balloon = "virtio-balloon-device,free-page-reporting=off"
	}
	args = append(args, "-device", "virtio-rng-device", "-device", balloon)
	if spec.ControlSocket != "" {
		args = append(args,
			"-device", "virtio-serial-device",
			"-chardev", "socket,id=agent,path="+spec.ControlSocket+",server=on,wait=off",
			"-device", "virtserialport,chardev=agent,name="+guest.PortName)
		if spec.TunnelSocket != "" {
			args = append(args,
				"-chardev", "socket,id=tunnel,path="+spec.TunnelSocket+",server=on,wait=off",
				"-device", "virtserialport,chardev=tunnel,name="+guest.TunnelPortName)
		}
	}
	return args
}

// Start spawns QEMU and returns once it runs and its QMP socket answers.
// The guest boots afterwards; the caller waits for the agent.
func (d *Driver) Start(ctx context.Context, spec vmm.Spec) (vmm.Handles, error) {
	return d.start(ctx, spec, bootMemory(spec), nil)
}

// start is Start with memory m and extra arguments (an incoming
// migration's).
func (d *Driver) start(ctx context.Context, spec vmm.Spec, m memory, extra []string) (vmm.Handles, error) {
	pidfile, qmp, stderrPath := files(spec.Dir)
	events, exitFile := eventFiles(spec.Dir)
	for _, p := range []string{pidfile, qmp, events, exitFile, spec.ControlSocket, spec.TunnelSocket} {
		if p != "" {
			_ = os.Remove(p)
		}
	}
	errf, err := os.OpenFile(stderrPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return vmm.Handles{}, fmt.Errorf("opening qemu log: %w", err)
	}
	defer errf.Close()
	proc, err := run.Spawn(append(d.args(spec, m), extra...), nil, nil, errf)
	if err != nil {
		return vmm.Handles{}, fmt.Errorf("starting qemu: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		// Reap QEMU when it exits while this daemon is its parent.
		_, _ = proc.Wait()
		close(exited)
	}()
	h := vmm.Handles{Driver: d.Name(), PID: proc.Pid, ControlSocket: spec.ControlSocket, TunnelSocket: spec.TunnelSocket,
		Extra: map[string]string{"qmp": qmp, "pidfile": pidfile, "events": events}}
	memoryHandles(h.Extra, m)

	// QEMU creates its sockets before running the guest: when QMP answers,
	// the command line was accepted.
	deadline := time.After(30 * time.Second)
	for {
		if c, err := net.Dial("unix", qmp); err == nil {
			c.Close()
			d.Watch(h)
			return h, nil
		}
		select {
		case <-exited:
			return vmm.Handles{}, fmt.Errorf("qemu exited at start: %s", vmm.FileTail(stderrPath, 1500))
		case <-deadline:
			_ = proc.Kill()
			<-exited
			return vmm.Handles{}, errors.New("qemu did not open its QMP socket within 30s")
		case <-ctx.Done():
			_ = proc.Kill()
			<-exited
			return vmm.Handles{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop asks the agent to power the guest off, falls back to an ACPI
// power-button press over QMP, and kills QEMU when timeout passes.
func (d *Driver) Stop(ctx context.Context, h vmm.Handles, timeout time.Duration) error {
	if !d.Alive(h) {
		return nil
	}
	return vmm.GracefulStop(ctx, "qemu", h, timeout, func(context.Context) {
		_ = qmpCommand(h.Extra["qmp"], "system_powerdown")
	})
}

// Alive reports whether h's QEMU still runs. The PID alone could have been
// reused, so the process must also be QEMU with this VM's pidfile.
func (d *Driver) Alive(h vmm.Handles) bool {
	args := proc.Cmdline(h.PID)
	return len(args) > 0 && filepath.Base(args[0]) == Binary && strings.Contains(strings.Join(args, " "), h.Extra["pidfile"])
}

// Watch holds the VM's event monitor until QEMU exits, and notes a guest
// shutdown's reason in qemu.exit: QEMU runs with -no-reboot, so a guest
// reboot and a poweroff both end the process, and only this event tells
// them apart. (Rebooting in place hangs a TCG guest's next boot now and
// then, measured here; a fresh QEMU does not.)
func (d *Driver) Watch(h vmm.Handles) {
	sock := h.Extra["events"]
	if sock == "" {
		return // started by a banger without the event monitor
	}
	_, exitFile := eventFiles(filepath.Dir(sock))
	go func() {
		c, err := net.DialTimeout("unix", sock, 2*time.Second)
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		if _, err := r.ReadBytes('\n'); err != nil {
			return
		}
		if err := json.NewEncoder(c).Encode(map[string]string{"execute": "qmp_capabilities"}); err != nil {
			return
		}
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return // QEMU exited
			}
			var ev struct {
				Event string `json:"event"`
				Data  struct {
					Guest  bool   `json:"guest"`
					Reason string `json:"reason"`
				} `json:"data"`
			}
			if json.Unmarshal(line, &ev) != nil || ev.Event != "SHUTDOWN" || !ev.Data.Guest {
				continue
			}
			_ = os.WriteFile(exitFile, []byte(ev.Data.Reason+"\n"), 0o600)
		}
	}()
}

// ExitOf reads the shutdown reason Watch noted: "guest-reset" is a reboot,
// "guest-shutdown" a poweroff from inside the guest.
func (d *Driver) ExitOf(h vmm.Handles) vmm.Exit {
	sock := h.Extra["events"]
	if sock == "" {
		return vmm.ExitUnknown
	}
	_, exitFile := eventFiles(filepath.Dir(sock))
	b, err := os.ReadFile(exitFile)
	if err != nil {
		return vmm.ExitUnknown
	}
	switch strings.TrimSpace(string(b)) {
	case "guest-reset":
		return vmm.ExitReboot
	case "guest-shutdown":
		return vmm.ExitPoweroff
	}
	return vmm.ExitUnknown
}

// Cleanup removes the sockets and files QEMU and the event watch left.
func (d *Driver) Cleanup(_ context.Context, h vmm.Handles) error {
	var exitFile string
	if sock := h.Extra["events"]; sock != "" {
		_, exitFile = eventFiles(filepath.Dir(sock))
	}
	for _, p := range []string{h.Extra["qmp"], h.Extra["pidfile"], h.Extra["events"], exitFile, h.ControlSocket, h.TunnelSocket} {
		if p != "" {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("removing %s: %w", p, err)
			}
		}
	}
	return nil
}

// qmpCommand runs one QMP command without arguments.
func qmpCommand(sock, command string) error {
	_, err := qmpQuery(sock, command)
	return err
}

// tscKHz reads the host's CPU frequency from /proc/cpuinfo.
func tscKHz() int64 {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "cpu MHz"); ok {
			_, v, _ := strings.Cut(rest, ":")
			mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil && mhz > 0 {
				return int64(mhz * 1000)
			}
		}
	}
	return 0
}

// Stats reads CPU and memory from /proc, disk bytes from QMP's
// query-blockstats and network bytes from the tap.
func (d *Driver) Stats(_ context.Context, h vmm.Handles) (vmm.Stats, error) {
	st, err := vmm.ProcessStats(h.PID)
	if err != nil {
		return st, err
	}
	if reply, err := qmpQuery(h.Extra["qmp"], "query-blockstats"); err == nil {
		var devs []struct {
			Stats struct {
				RdBytes int64 `json:"rd_bytes"`
				WrBytes int64 `json:"wr_bytes"`
			} `json:"stats"`
		}
		if json.Unmarshal(reply, &devs) == nil {
			for _, dv := range devs {
				st.DiskReadBytes += dv.Stats.RdBytes
				st.DiskWriteBytes += dv.Stats.WrBytes
			}
		}
	}
	if h.Tap != "" {
		st.NetRxBytes, st.NetTxBytes = vmm.TapStats(h.Tap)
	}
	return st, nil
}

// Paused reports why QEMU holds the guest paused, or "" when it runs.
func (d *Driver) Paused(_ context.Context, h vmm.Handles) (string, error) {
	reply, err := qmpQuery(h.Extra["qmp"], "query-status")
	if err != nil {
		return "", err
	}
	var st struct {
		Running bool   `json:"running"`
		Status  string `json:"status"`
	}
	if err := json.Unmarshal(reply, &st); err != nil {
		return "", fmt.Errorf("decoding qmp query-status: %w", err)
	}
	switch {
	case st.Running:
		return "", nil
	case st.Status == "io-error":
		return "io-error: a disk write failed, usually because the host's filesystem is full; free space there, then `banger vm restart`", nil
	default:
		return st.Status, nil
	}
}
