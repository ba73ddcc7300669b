package qemu

import (
	"os"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/guest"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/vmm"
)

func TestArgs(t *testing.T) {
	spec := vmm.Spec{
		VM: model.VM{VCPUs: 2, MemoryMiB: 512}, Dir: "/s/vms/x",
		Kernel: "/i/vmlinuz", Initrd: "/i/initrd.cpio", Cmdline: "console=ttyS0",
		Disks: []vmm.Disk{{Path: "/i/rootfs.ext4", ReadOnly: true}, {Path: "/s/vms/x/upper.ext4"}},
		Tap:   "bgtap0", MAC: "02:fc:ac:10:00:02",
		ConsoleLog: "/s/vms/x/console.log", ControlSocket: "/s/vms/x/agent.sock",
		TunnelSocket: "/s/vms/x/tunnel.sock",
	}
	tcg := strings.Join(New("tcg").Args(spec), " ")
	for _, want := range []string{
		"-M microvm", "-accel tcg", "-smp 2", "-m 512", "-nodefaults", "-no-reboot",
		"-kernel /i/vmlinuz", "-initrd /i/initrd.cpio",
		"file=/i/rootfs.ext4,format=raw,if=none,readonly=on",
		"ifname=bgtap0,script=no,downscript=no", "mac=02:fc:ac:10:00:02",
		"path=/s/vms/x/console.log,append=on",
		"socket,id=agent,path=/s/vms/x/agent.sock,server=on,wait=off",
		"virtserialport,chardev=agent,name=" + guest.PortName,
		"socket,id=tunnel,path=/s/vms/x/tunnel.sock,server=on,wait=off",
		"virtserialport,chardev=tunnel,name=" + guest.TunnelPortName,
		"-pidfile /s/vms/x/qemu.pid", "virtio-rng-device",
		"-no-reboot", "-qmp unix:/s/vms/x/qmp-events.sock,server=on,wait=off",
	} {
		if !strings.Contains(tcg, want) {
			t.Errorf("qemu args lack %q:\n%s", want, tcg)
		}
	}
	if tscKHz() > 0 && !strings.Contains(tcg, "tsc_early_khz=") {
		t.Error("TCG boots need tsc_early_khz (a third hang without it)")
	}
	if !strings.Contains(tcg, "reboot=t") {
		t.Error("QEMU guests must reboot by triple fault: other reboot paths can spin forever under TCG")
	}
	if !strings.Contains(tcg, "tsc=reliable") {
		t.Error("TCG boots need tsc=reliable: the guest otherwise falls back to jiffies, whose clock drifts by seconds")
	}
	if strings.Contains(tcg, "upper.ext4,format=raw,if=none,readonly") {
		t.Error("the writable layer was attached read-only")
	}
	kvm := strings.Join(New("kvm").Args(spec), " ")
	if !strings.Contains(kvm, "-accel kvm") || !strings.Contains(kvm, "-cpu host") || strings.Contains(kvm, "tsc_early_khz") {
		t.Errorf("kvm args: %s", kvm)
	}
}

// The event watch tells a guest's reboot from its poweroff, and a VMM that
// no watch saw end (a kill) from both.
func TestExitOf(t *testing.T) {
	dir := t.TempDir()
	sock, exitFile := eventFiles(dir)
	d := New("tcg")
	h := vmm.Handles{Extra: map[string]string{"events": sock}}
	if got := d.ExitOf(h); got != vmm.ExitUnknown {
		t.Errorf("no event: %v", got)
	}
	for reason, want := range map[string]vmm.Exit{"guest-reset\n": vmm.ExitReboot, "guest-shutdown\n": vmm.ExitPoweroff, "host-qmp-quit\n": vmm.ExitUnknown} {
		if err := os.WriteFile(exitFile, []byte(reason), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := d.ExitOf(h); got != want {
			t.Errorf("%q: %v, want %v", reason, got, want)
		}
	}
	if got := d.ExitOf(vmm.Handles{}); got != vmm.ExitUnknown {
		t.Errorf("handles from before the event monitor: %v", got)
	}
}
