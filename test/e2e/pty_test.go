package e2e

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// runTTY runs banger with a terminal as its stdin, stdout and stderr (as a
// user at a shell would) and returns what the terminal showed and the exit
// status. input is typed after a short pause.
func (w *world) runTTY(input string, args ...string) (string, int) {
	t := w.t
	t.Helper()
	ptmFD, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ptm := os.NewFile(uintptr(ptmFD), "ptmx")
	defer ptm.Close()
	if err := unix.IoctlSetPointerInt(ptmFD, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(ptmFD, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_ = unix.IoctlSetWinsize(int(pts.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 120})
	full := append([]string{"netns", "exec", w.ns, filepath.Join(binDir, "banger"),
		"--socket", w.socket, "--state-dir", w.stateDir, "--config", w.config}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", full...)
	cmd.Env = append(os.Environ(), "TERM=xterm", "XDG_CACHE_HOME="+filepath.Join(w.dir, "cache"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pts.Close()
	out := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(ptm) // EIO once the last holder of the terminal exits
		out <- b
	}()
	if input != "" {
		time.Sleep(2 * time.Second)
		_, _ = ptm.WriteString(input)
	}
	err = cmd.Wait()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-out:
		return string(b), code
	case <-time.After(5 * time.Second):
		return "", code
	}
}
