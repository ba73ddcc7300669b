package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/guest"
)

// ExecOptions shape the command of an SSH session.
type ExecOptions struct {
	Env  []string // KEY=VALUE, on top of the session's environment
	Dir  string   // working directory ("" keeps the session's)
	User string   // user name or uid ("" keeps the session's)
	// Token names the command for `banger-agent kill TOKEN SIGNAL`, the
	// way the host signals it when the guest's sshd refuses SSH signal
	// requests (OpenSSH before 9.5 does).
	Token   string
	Command []string
}

// execDir holds one file per running command with a token: its process
// group.
const execDir = "/run/banger/exec"

// validToken is 8 to 64 lowercase hex digits or letters.
func validToken(t string) bool {
	if len(t) < 8 || len(t) > 64 {
		return false
	}
	return strings.Trim(t, "abcdefghijklmnopqrstuvwxyz0123456789") == ""
}

// Kill sends a signal (a name such as INT or TERM) to the process group of
// the command running with token.
func Kill(token, sig string) error {
	if !validToken(token) {
		return fmt.Errorf("kill: bad token %q", token)
	}
	signals := map[string]syscall.Signal{"INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "HUP": syscall.SIGHUP, "QUIT": syscall.SIGQUIT, "KILL": syscall.SIGKILL}
	s, ok := signals[strings.TrimPrefix(sig, "SIG")]
	if !ok {
		return fmt.Errorf("kill: unknown signal %q", sig)
	}
	b, err := os.ReadFile(filepath.Join(execDir, token))
	if err != nil {
		return fmt.Errorf("kill: no command with that token: %w", err)
	}
	pgid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pgid <= 1 {
		return fmt.Errorf("kill: bad process group in %s", token)
	}
	return syscall.Kill(-pgid, s)
}

// ParseExecArgs reads `exec [--env K=V]... [--workdir D] [--user U] -- CMD...`.
func ParseExecArgs(args []string) (ExecOptions, error) {
	var o ExecOptions
	for len(args) > 0 {
		a := args[0]
		args = args[1:]
		switch {
		case a == "--":
			o.Command = args
			if len(o.Command) == 0 {
				return o, errors.New("exec: no command after --")
			}
			return o, nil
		case (a == "--env" || a == "--workdir" || a == "--user" || a == "--token") && len(args) > 0:
			v := args[0]
			args = args[1:]
			switch a {
			case "--env":
				if !strings.Contains(v, "=") {
					return o, fmt.Errorf("exec: --env %q is not KEY=VALUE", v)
				}
				o.Env = append(o.Env, v)
			case "--workdir":
				o.Dir = v
			case "--user":
				o.User = v
			case "--token":
				if !validToken(v) {
					return o, fmt.Errorf("exec: bad token %q", v)
				}
				o.Token = v
			}
		default:
			return o, fmt.Errorf("exec: unexpected %q", a)
		}
	}
	return o, errors.New("exec: no -- before the command")
}

// Exec runs an SSH session's command the way a terminal would treat a
// foreground job: in its own process group, with INT, TERM, HUP and QUIT
// that the session receives (sshd delivers the client's signals to us)
// passed to the whole group, and ended (HUP, then KILL two seconds later)
// when the session's output goes away, that is when the client hung up.
// The session ends when the command exits, even if it left processes
// running. It returns the status a shell would report: the exit code, or
// 128 plus the signal that killed the command.
func Exec(o ExecOptions, stderr io.Writer) int {
	env := os.Environ()
	// An OCI image's config gives defaults, as docker exec honours them:
	// its Env under the command's own, its WorkingDir and its User.
	if img := readImageConfig(); img != nil {
		env = append(env, img.Env...)
		if o.Dir == "" {
			o.Dir = img.WorkingDir
		}
		if o.User == "" {
			o.User, _, _ = strings.Cut(img.User, ":")
		}
	}
	env = dedupEnv(append(env, o.Env...))
	path, err := lookPathIn(o.Command[0], envValue(env, "PATH"))
	if err != nil {
		fmt.Fprintf(stderr, "banger: %v\n", err)
		return 127
	}
	attr := &syscall.SysProcAttr{Setpgid: true}
	if o.User != "" {
		u, err := lookupUser(o.User)
		if err != nil {
			fmt.Fprintf(stderr, "banger: %v\n", err)
			return 126
		}
		attr.Credential = &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: u.groups}
		env = append(env, "HOME="+u.home, "USER="+u.name, "LOGNAME="+u.name)
		if o.Dir == "" {
			o.Dir = "/"
			if fi, err := os.Stat(u.home); err == nil && fi.IsDir() {
				o.Dir = u.home
			}
		}
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	// The command writes into pipes of ours that we copy to the session:
	// what it leaves running in the background keeps only our pipes, so the
	// session ends when the command does (as docker exec does), and output
	// after that goes nowhere.
	outs, err := relay(os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintf(stderr, "banger: %v\n", err)
		return 126
	}
	p, err := os.StartProcess(path, o.Command, &os.ProcAttr{
		Dir: o.Dir, Env: env, Files: []*os.File{os.Stdin, outs.w[0], outs.w[1]}, Sys: attr,
	})
	outs.closeWriters()
	if err != nil {
		fmt.Fprintf(stderr, "banger: starting %s: %v\n", o.Command[0], err)
		return 126
	}
	if o.Token != "" {
		f := filepath.Join(execDir, o.Token)
		if err := os.MkdirAll(execDir, 0o700); err == nil {
			_ = os.WriteFile(f, []byte(strconv.Itoa(p.Pid)+"\n"), 0o600)
			defer os.Remove(f)
		}
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = syscall.Kill(-p.Pid, s.(syscall.Signal))
			case <-done:
				return
			}
		}
	}()
	go watchHangup(p.Pid, done)
	st, err := p.Wait()
	close(done)
	outs.finish(200 * time.Millisecond)
	if err != nil {
		fmt.Fprintf(stderr, "banger: waiting for %s: %v\n", o.Command[0], err)
		return 126
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

// relayed is the pair of pipes between the command and the session.
type relayed struct {
	w      [2]*os.File // the command's ends
	copied chan struct{}
}

// relay makes the pipes and copies them to out and errw.
func relay(out, errw *os.File) (*relayed, error) {
	r := &relayed{copied: make(chan struct{}, 2)}
	for i, dst := range []*os.File{out, errw} {
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("making the output pipes: %w", err)
		}
		r.w[i] = pw
		go func() {
			_, _ = io.Copy(dst, pr)
			pr.Close()
			r.copied <- struct{}{}
		}()
	}
	return r, nil
}

func (r *relayed) closeWriters() {
	for _, w := range r.w {
		w.Close()
	}
}

// finish waits for the command's output to drain, at most grace once
// only a background process could still hold the pipes.
func (r *relayed) finish(grace time.Duration) {
	deadline := time.After(grace)
	for i := 0; i < 2; i++ {
		select {
		case <-r.copied:
		case <-deadline:
			return
		}
	}
}

// watchHangup ends the command's process group when the session's stdout
// reports an error or hang-up: sshd closed its end because the client went
// away. A terminal (a session with a PTY) is left to the kernel's SIGHUP.
func watchHangup(pid int, done <-chan struct{}) {
	if isTerminal(1) {
		return
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		fds := []unix.PollFd{{Fd: 1}}
		if n, err := unix.Poll(fds, 0); err != nil || n == 0 || fds[0].Revents&(unix.POLLERR|unix.POLLHUP) == 0 {
			continue
		}
		_ = syscall.Kill(-pid, syscall.SIGHUP)
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		return
	}
}

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// lookPath finds a command as a shell would: a name with a slash as is,
// else the first executable file of that name on PATH.
// envValue is the value of key in env (the last one wins), or "".
func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// lookPathIn finds name in the directories of path (the usual ones when
// empty).
func lookPathIn(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	if path == "" {
		path = defaultPath
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: command not found", name)
}

type user struct {
	name, home string
	uid, gid   uint32
	groups     []uint32
}

// lookupUser resolves a name or uid against the guest's own /etc/passwd
// and /etc/group.
func lookupUser(who string) (user, error) {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return user{}, fmt.Errorf("reading /etc/passwd: %w", err)
	}
	var u user
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 7 || (f[0] != who && f[2] != who) {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		u = user{name: f[0], home: f[5], uid: uint32(uid), gid: uint32(gid)}
		found = true
		break
	}
	if !found {
		if uid, err := strconv.ParseUint(who, 10, 32); err == nil {
			return user{name: who, home: "/", uid: uint32(uid), gid: uint32(uid)}, nil
		}
		return user{}, fmt.Errorf("user %q is not in the guest's /etc/passwd", who)
	}
	if g, err := os.ReadFile("/etc/group"); err == nil {
		for _, line := range strings.Split(string(g), "\n") {
			f := strings.Split(line, ":")
			if len(f) < 4 {
				continue
			}
			for _, m := range strings.Split(f[3], ",") {
				if m == u.name {
					if gid, err := strconv.ParseUint(f[2], 10, 32); err == nil {
						u.groups = append(u.groups, uint32(gid))
					}
				}
			}
		}
	}
	return u, nil
}

// installExec puts a copy of this binary at guest.ExecPath in the new
// root, so SSH sessions can run their commands through Exec.
func installExec(root *os.Root) error {
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("opening the agent binary: %w", err)
	}
	defer self.Close()
	rel := strings.TrimPrefix(guest.ExecPath, "/")
	if err := root.MkdirAll(filepath.Dir(rel), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(guest.ExecPath), err)
	}
	tmp := rel + ".new"
	_ = root.Remove(tmp)
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return fmt.Errorf("writing %s: %w", guest.ExecPath, err)
	}
	_, err = io.Copy(f, self)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Chmod(tmp, 0o755)
	}
	if err == nil {
		err = root.Rename(tmp, rel)
	}
	if err != nil {
		_ = root.Remove(tmp)
		return fmt.Errorf("writing %s: %w", guest.ExecPath, err)
	}
	return nil
}
