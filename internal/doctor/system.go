package doctor

import (
	"github.com/banger-dev/banger/internal/proc"

	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/host/run"
)

// System answers the host-side facts for real: programs on PATH, device
// nodes, /proc, free disk. The daemon's Facts embed it. It changes nothing.
type System struct {
	// Proc is procfs's mount point, "/proc" when empty; Dev is /dev's.
	Proc, Dev string
}

func (s System) proc() string {
	if s.Proc == "" {
		return "/proc"
	}
	return s.Proc
}

func (s System) dev() string {
	if s.Dev == "" {
		return "/dev"
	}
	return s.Dev
}

// versionTimeout bounds a `--version` run.
const versionTimeout = 5 * time.Second

// Binary finds name on PATH and runs it with versionArgs (if any) to read
// the first line of its version output.
func (System) Binary(ctx context.Context, name string, versionArgs ...string) Binary {
	path, err := run.LookPath(name)
	if err != nil {
		return Binary{}
	}
	b := Binary{Path: path}
	if len(versionArgs) == 0 {
		return b
	}
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	out, err := run.Output(ctx, append([]string{path}, versionArgs...))
	if err != nil {
		b.Err = err
		return b
	}
	b.Version, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	return b
}

// Tun returns nil when <dev>/net/tun is a character device.
func (s System) Tun() error {
	p := filepath.Join(s.dev(), "net", "tun")
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if fi.Mode()&fs.ModeCharDevice == 0 {
		return fmt.Errorf("%s is not a character device", p)
	}
	return nil
}

// Filesystems lists the filesystem types in <proc>/filesystems.
func (s System) Filesystems() ([]string, error) {
	b, err := os.ReadFile(filepath.Join(s.proc(), "filesystems"))
	if err != nil {
		return nil, fmt.Errorf("reading filesystems: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			out = append(out, f[len(f)-1])
		}
	}
	return out, nil
}

// FreeBytes is the space in dir available to unprivileged writers.
func (System) FreeBytes(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// SameFilesystem reports whether a and b (each, when it does not exist,
// its nearest existing parent) are on one filesystem.
func (System) SameFilesystem(a, b string) (bool, error) {
	dev := func(p string) (uint64, error) {
		for {
			var st unix.Stat_t
			err := unix.Stat(p, &st)
			if err == nil {
				return st.Dev, nil
			}
			if !errors.Is(err, unix.ENOENT) || p == filepath.Dir(p) {
				return 0, fmt.Errorf("stat %s: %w", p, err)
			}
			p = filepath.Dir(p)
		}
	}
	da, err := dev(a)
	if err != nil {
		return false, err
	}
	db, err := dev(b)
	if err != nil {
		return false, err
	}
	return da == db, nil
}

// VMMProcesses lists the VMM processes (QEMU, Firecracker, jailer) whose
// command line names a path inside stateDir: banger's, alive or orphaned.
func (s System) VMMProcesses(stateDir string) ([]Process, error) {
	if _, err := os.Stat(s.proc()); err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var out []Process
	for _, p := range proc.VMMsIn(s.proc(), filepath.Clean(stateDir)) {
		out = append(out, Process{PID: p.PID, Cmdline: p.Cmdline})
	}
	return out, nil
}

// Alive reports whether a process with pid runs (a zombie does not).
func Alive(pid int) bool { return proc.Alive(pid) }
