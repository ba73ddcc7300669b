// Command fakejailer stands in for Firecracker's jailer in banger's tests,
// where no jailer is installed. It does what the jailer's documentation
// (docs/jailer.md in Firecracker's repository) says the jailer does, in
// its order, with the same command line:
//
//	jailer --id ID --exec-file FILE --uid UID --gid GID
//	       [--chroot-base-dir DIR] [--netns PATH] [--daemonize] -- ARGS...
//
// It makes DIR/<FILE's name>/ID/root (the chroot), copies FILE into it,
// makes dev/kvm and dev/net/tun there owned by UID:GID, joins the network
// namespace, chroots into the directory, drops to GID and UID and
// executes /<FILE's name> --id ID --start-time-us … ARGS. It leaves out
// cgroups, resource limits and the new mount namespace (pivot_root); what
// banger's driver depends on (paths inside the chroot, the unprivileged
// user, one process whose command line carries --id) is the jailer's.
//
// For the fake firecracker inside the chroot it copies the API
// description in (FAKE_FC_SPEC=/openapi.yaml) and hands FAKE_FC_RECORD
// over as an inherited descriptor (fd:N), since neither host path is
// reachable from the chroot.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/host/disk"
)

// specPath is set at build time by fctest.BuildJailer: the API
// description the fake firecracker reads.
var specPath string

var idPattern = regexp.MustCompile(`^[a-zA-Z0-9-]{1,64}$`)

type args struct {
	id, execFile, chrootBase, netns string
	uid, gid                        int
	daemonize                       bool
	extra                           []string
}

func parseArgs(argv []string) (args, error) {
	a := args{chrootBase: "/srv/jailer", uid: -1, gid: -1}
	for i := 0; i < len(argv); i++ {
		name := argv[i]
		if name == "--" {
			a.extra = argv[i+1:]
			break
		}
		if name == "--daemonize" {
			a.daemonize = true
			continue
		}
		if i+1 >= len(argv) {
			return a, fmt.Errorf("argument %s requires a value", name)
		}
		i++
		v := argv[i]
		var err error
		switch name {
		case "--id":
			a.id = v
		case "--exec-file":
			a.execFile = v
		case "--chroot-base-dir":
			a.chrootBase = v
		case "--netns":
			a.netns = v
		case "--uid":
			a.uid, err = strconv.Atoi(v)
		case "--gid":
			a.gid, err = strconv.Atoi(v)
		default:
			return a, fmt.Errorf("found argument '%s' which wasn't expected", name)
		}
		if err != nil {
			return a, fmt.Errorf("invalid value for %s: %q", name, v)
		}
	}
	switch {
	case a.id == "" || a.execFile == "" || a.uid < 0 || a.gid < 0:
		return a, errors.New("--id, --exec-file, --uid and --gid are required")
	case !idPattern.MatchString(a.id):
		return a, fmt.Errorf("invalid instance ID: %q", a.id)
	case !strings.Contains(filepath.Base(a.execFile), "firecracker"):
		return a, fmt.Errorf("invalid filename. The filename of `--exec-file` option must contain \"firecracker\": %s", a.execFile)
	}
	return a, nil
}

func main() {
	a, err := parseArgs(os.Args[1:])
	if err == nil {
		err = jail(a)
	}
	fmt.Fprintf(os.Stderr, "Jailer error: %v\n", err)
	os.Exit(1)
}

// jail does the jailer's steps and, on success, never returns.
func jail(a args) error {
	start := time.Now()
	runtime.LockOSThread() // setns and chroot apply to this thread's exec
	name := filepath.Base(a.execFile)
	root := filepath.Join(a.chrootBase, name, a.id, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("creating the chroot: %w", err)
	}
	if err := copyFile(a.execFile, filepath.Join(root, name), 0o755); err != nil {
		return fmt.Errorf("copying the exec file: %w", err)
	}
	devs := []struct {
		path         string
		major, minor uint32
	}{{"dev/kvm", 10, 232}, {"dev/net/tun", 10, 200}}
	for _, d := range devs {
		p := filepath.Join(root, d.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		_ = os.Remove(p)
		if err := unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return fmt.Errorf("creating %s: %w", d.path, err)
		}
		if err := os.Chown(p, a.uid, a.gid); err != nil {
			return err
		}
	}
	// The fake firecracker's own inputs, which live outside the chroot.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FAKE_FC_SPEC=") && !strings.HasPrefix(kv, "FAKE_FC_RECORD=") {
			env = append(env, kv)
		}
	}
	if specPath != "" {
		if err := copyFile(specPath, filepath.Join(root, "openapi.yaml"), 0o644); err != nil {
			return fmt.Errorf("copying the API description: %w", err)
		}
		env = append(env, "FAKE_FC_SPEC=/openapi.yaml")
	}
	if rec := os.Getenv("FAKE_FC_RECORD"); rec != "" {
		// Opened without O_CLOEXEC, so the exec'd fake inherits it.
		fd, err := unix.Open(rec, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT, 0o644)
		if err != nil {
			return fmt.Errorf("opening FAKE_FC_RECORD: %w", err)
		}
		env = append(env, "FAKE_FC_RECORD=fd:"+strconv.Itoa(fd))
	}
	if a.netns != "" {
		f, err := os.Open(a.netns)
		if err != nil {
			return fmt.Errorf("opening the network namespace: %w", err)
		}
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("joining the network namespace: %w", err)
		}
	}
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if a.daemonize {
		if _, err := unix.Setsid(); err != nil {
			return err
		}
	}
	if err := unix.Setgroups(nil); err != nil {
		return err
	}
	if err := unix.Setresgid(a.gid, a.gid, a.gid); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	if err := unix.Setresuid(a.uid, a.uid, a.uid); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	us := strconv.FormatInt(start.UnixMicro(), 10)
	argv := append([]string{"/" + name, "--id", a.id,
		"--start-time-us", us, "--start-time-cpu-us", "0", "--parent-cpu-time-us", "0"}, a.extra...)
	return syscall.Exec("/"+name, argv, env)
}

// copyFile copies from to to (replacing it) with mode.
func copyFile(from, to string, mode os.FileMode) error {
	_ = os.Remove(to)
	if err := disk.Copy(context.Background(), from, to); err != nil {
		return err
	}
	return os.Chmod(to, mode)
}
