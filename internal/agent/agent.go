// Package agent is banger's guest side: /init in the initramfs banger
// generates, and the control-channel server it leaves running. As /init it
// loads the modules the kernel needs, finds its disks by their content,
// mounts the root as an overlay (read-only base + per-VM writable disk),
// writes the VM's identity (hostname, hosts, DNS, SSH keys), configures the
// network, switches root and hands over to the image's own init, or stays
// as a minimal init when the image has none.
//
// The agent needs no kernel command-line parameters: everything comes from
// the config disk (see internal/guest).
package agent

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/guest"
)

// logger writes short progress lines, with the time since the agent
// started, to the console: the serial log of a boot shows each step.
type logger struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func newLogger(w io.Writer) *logger { return &logger{w: w, start: time.Now()} }

func (l *logger) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "banger-agent: +%.3fs %s\n", time.Since(l.start).Seconds(), fmt.Sprintf(format, args...))
}

// boot is what the steps of Init share.
type boot struct {
	log      *logger
	version  string
	disks    disks
	cfg      guest.Config
	init     string // the image's init, "" when it has none
	servePID int    // the control-channel server
	// serveFlags are what the control-channel server is run with
	// (--maintenance in a maintenance boot).
	serveFlags []string
}

// step is one named stage of the boot sequence.
type step struct {
	name string
	run  func(*boot) error
}

// earlySteps start every boot; the config disk, found last, says which
// steps follow.
var earlySteps = []step{
	{"mount /proc, /sys, /dev and /run", (*boot).mountEarly},
	{"load modules", (*boot).loadModules},
	{"find disks", (*boot).findDisks},
}

// steps are the rest of a VM's boot, in order.
var steps = []step{
	{"mount the root overlay and /work", (*boot).mountRoot},
	{"write hostname, hosts, DNS and SSH keys", (*boot).writeFiles},
	{"configure the network", (*boot).configureNetwork},
	{"switch root", (*boot).switchRoot},
	{"start the control channel", (*boot).startServe},
	{"hand over to the image's init", (*boot).execInit},
}

// maintenanceSteps follow "find disks" when the config asks for a
// maintenance boot: nothing of the image runs and nothing is written.
var maintenanceSteps = []step{
	{"mount the root overlay read-only", (*boot).mountRootReadOnly},
	{"bring up loopback", (*boot).configureNetwork},
	{"start the control channel and the root export", (*boot).startServeMaintenance},
}

// Init runs the boot sequence as PID 1. It does not return: it execs the
// image's init, stays as a minimal init when there is none, or logs the
// error and powers the VM off.
func Init(version string) {
	b := &boot{log: newLogger(os.Stderr), version: version}
	b.log.Printf("banger-agent %s starting", version)
	b.run(earlySteps)
	if b.cfg.Maintenance {
		b.log.Printf("maintenance boot")
		b.run(maintenanceSteps)
	} else {
		b.run(steps)
	}
	b.minimalInit()
}

func (b *boot) run(steps []step) {
	for _, s := range steps {
		b.log.Printf("%s", s.name)
		if err := s.run(b); err != nil {
			b.fatal(fmt.Errorf("%s: %w", s.name, err))
		}
	}
}

// fatal reports err and powers off. PID 1 must never exit: the kernel
// would panic, and with panic=-1 reboot into the same failure forever.
func (b *boot) fatal(err error) {
	b.log.Printf("FATAL: %v; powering off", err)
	powerOff(b.log)
}

// powerOff syncs and powers the machine off; if that fails it blocks
// forever rather than return.
func powerOff(log *logger) {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		log.Printf("power off: %v; halting here", err)
	}
	for {
		time.Sleep(time.Hour)
	}
}
