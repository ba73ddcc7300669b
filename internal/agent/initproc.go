package agent

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// initCandidates are where the image's init may be, in order of choice.
var initCandidates = []string{"/sbin/init", "/lib/systemd/systemd"}

// findInit returns the image's init under root, or "" when it has none.
func findInit(root string) string {
	for _, p := range initCandidates {
		if st, err := os.Stat(root + p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// startServe starts the control-channel server as a process of its own,
// so it outlives this one's exec into the image's init.
func (b *boot) startServe() error {
	b.init = findInit("")
	pid, err := b.forkServe()
	if err != nil {
		return err
	}
	b.servePID = pid
	b.log.Printf("control channel server is pid %d", pid)
	return nil
}

// startServeMaintenance starts the control-channel server of a
// maintenance boot, which also serves the root export. The agent stays
// PID 1 (a minimal init) in the initramfs.
func (b *boot) startServeMaintenance() error {
	b.serveFlags = []string{"--maintenance"}
	pid, err := b.forkServe()
	if err != nil {
		return err
	}
	b.servePID = pid
	return nil
}

// forkServe runs the control-channel server (again, when it died), with
// the boot's flags for it.
func (b *boot) forkServe() (int, error) {
	return syscall.ForkExec("/proc/self/exe", append([]string{"banger-agent", "serve"}, b.serveFlags...), &syscall.ProcAttr{
		Dir:   "/",
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
}

// execInit replaces the agent with the image's init. Without one it
// returns, and Init goes on as a minimal init.
func (b *boot) execInit() error {
	if b.init == "" {
		b.log.Printf("the image has no init (%v): staying as a minimal init", initCandidates)
		return mountMinimal()
	}
	b.log.Printf("exec %s", b.init)
	return unix.Exec(b.init, []string{b.init}, os.Environ())
}

// minimalMounts are what an init mounts that the boot has not: PTYs for
// SSH sessions, shared memory and a /tmp.
var minimalMounts = []struct {
	dir, fstype, data string
	flags             uintptr
	mode              os.FileMode
}{
	{"/dev/pts", "devpts", "ptmxmode=0666,mode=0620", unix.MS_NOSUID | unix.MS_NOEXEC, 0o755},
	{"/dev/shm", "tmpfs", "mode=1777", unix.MS_NOSUID | unix.MS_NODEV, 0o1777},
	{"/tmp", "tmpfs", "mode=1777", unix.MS_NOSUID | unix.MS_NODEV, 0o1777},
}

// mountMinimal mounts minimalMounts, making the directories an image may
// lack (the root is the writable overlay).
func mountMinimal() error {
	for _, m := range minimalMounts {
		if err := os.MkdirAll(m.dir, m.mode); err != nil {
			return fmt.Errorf("creating %s: %w", m.dir, err)
		}
		if err := unix.Mount(m.fstype, m.dir, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mounting %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	return nil
}

// minimalInit is PID 1 for images without an init: it reaps orphans,
// restarts the control-channel server if it dies, and on Ctrl-Alt-Del,
// SIGTERM or SIGPWR stops everything and powers off.
func (b *boot) minimalInit() {
	// Ctrl-Alt-Del (Firecracker's SendCtrlAltDel) then sends SIGINT here
	// rather than resetting the machine on the spot.
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF); err != nil {
		b.log.Printf("turning Ctrl-Alt-Del into a signal: %v", err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGPWR)
	go func() {
		s := <-sigs
		b.log.Printf("%v: stopping all processes and powering off", s)
		stopAll()
		powerOff(b.log)
	}()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err == nil && pid != b.servePID:
			continue // an orphan, reaped
		case err == nil:
			b.log.Printf("control channel server exited (%v); restarting it", ws)
		default: // ECHILD: the server is not running
		}
		time.Sleep(time.Second)
		if b.servePID, err = b.forkServe(); err != nil {
			b.log.Printf("restarting the control channel server: %v", err)
			b.servePID = -1
		}
	}
}

// stopAll asks every other process to stop, gives them a moment, kills
// what is left and syncs.
func stopAll() {
	_ = unix.Kill(-1, unix.SIGTERM)
	time.Sleep(2 * time.Second)
	_ = unix.Kill(-1, unix.SIGKILL)
	unix.Sync()
}
