package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/guest"
)

// The embedded SSH server is the guest's sshd when the image has none
// running: an image without an init (busybox, alpine, distroless, a
// python:*-slim) starts no services. Root logs in with the keys banger
// wrote, and a session runs its command as OpenSSH's would: through
// /bin/sh -c when the image has a shell, else as the words of banger's
// own command line; with a PTY (size, TERM, resizes) or pipes; signals go
// to the command's process group; the exit status or signal comes back.

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// serveSSH listens on port 22 until ctx ends.
func serveSSH(ctx context.Context, log *logger) error {
	const hostKey, authorized = "/etc/ssh/ssh_host_ed25519_key", "/root/.ssh/authorized_keys"
	gen := hostKeyGen.Load()
	cfg, err := sshServerConfig(hostKey, authorized)
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", ":22")
	if err != nil {
		return fmt.Errorf("listening on port 22: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	log.Printf("serving ssh on port 22 (the image has no sshd)")
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if g := hostKeyGen.Load(); g != gen {
			// The guest took a new identity: the key and the authorized
			// keys are new files.
			if next, err := sshServerConfig(hostKey, authorized); err != nil {
				log.Printf("ssh server: reloading keys: %v; keeping the old ones", err)
			} else {
				cfg, gen = next, g
			}
		}
		go serveSSHConn(c, cfg, log)
	}
}

func sshServerConfig(hostKeyPath, authorizedPath string) (*ssh.ServerConfig, error) {
	hk, err := os.ReadFile(hostKeyPath)
	if err != nil {
		return nil, fmt.Errorf("reading the host key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(hk)
	if err != nil {
		return nil, fmt.Errorf("parsing the host key: %w", err)
	}
	ak, err := os.ReadFile(authorizedPath)
	if err != nil {
		return nil, fmt.Errorf("reading the authorized keys: %w", err)
	}
	var keys [][]byte
	for rest := ak; len(bytes.TrimSpace(rest)) > 0; {
		k, _, _, r, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			break
		}
		keys = append(keys, k.Marshal())
		rest = r
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if meta.User() != "root" {
				return nil, fmt.Errorf("only root logs in")
			}
			for _, k := range keys {
				if bytes.Equal(k, key.Marshal()) {
					return &ssh.Permissions{}, nil
				}
			}
			return nil, fmt.Errorf("key not authorized")
		},
		ServerVersion: "SSH-2.0-banger-agent",
	}
	cfg.AddHostKey(signer)
	return cfg, nil
}

func serveSSHConn(nc net.Conn, cfg *ssh.ServerConfig, log *logger) {
	conn, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		nc.Close()
		return
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs) // keepalives get their (negative) reply
	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		s := &sshSession{ch: ch, log: log}
		go s.serve(creqs)
	}
}

type ptyRequest struct {
	Term          string
	Cols, Rows    uint32
	Width, Height uint32
	Modes         string
}

type sshSession struct {
	ch  ssh.Channel
	log *logger

	mu      sync.Mutex
	env     []string
	pty     *ptyRequest
	ptm     *os.File
	proc    *os.Process
	started bool
	pumps   sync.WaitGroup
}

func (s *sshSession) serve(reqs <-chan *ssh.Request) {
	for req := range reqs {
		ok := false
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			if ssh.Unmarshal(req.Payload, &kv) == nil && kv.Name != "" && !strings.Contains(kv.Name, "=") {
				s.mu.Lock()
				s.env = append(s.env, kv.Name+"="+kv.Value)
				s.mu.Unlock()
				ok = true
			}
		case "pty-req":
			var p ptyRequest
			if ssh.Unmarshal(req.Payload, &p) == nil {
				s.mu.Lock()
				s.pty = &p
				s.mu.Unlock()
				ok = true
			}
		case "window-change":
			var w struct{ Cols, Rows, Width, Height uint32 }
			if ssh.Unmarshal(req.Payload, &w) == nil {
				s.mu.Lock()
				if s.ptm != nil {
					_ = unix.IoctlSetWinsize(int(s.ptm.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(w.Rows), Col: uint16(w.Cols)})
				}
				s.mu.Unlock()
				ok = true
			}
		case "signal":
			var sig struct{ Name string }
			if ssh.Unmarshal(req.Payload, &sig) == nil {
				ok = s.signal(sig.Name)
			}
		case "exec", "shell":
			var cmd struct{ Command string }
			if req.Type == "exec" && ssh.Unmarshal(req.Payload, &cmd) != nil {
				break
			}
			if err := s.start(req.Type == "shell", cmd.Command); err != nil {
				fmt.Fprintf(s.ch.Stderr(), "banger-agent: %v\r\n", err)
				if req.WantReply {
					_ = req.Reply(false, nil)
				}
				s.exit(127, "")
				return
			}
			ok = true
		}
		if req.WantReply {
			_ = req.Reply(ok, nil)
		}
	}
	// The client closed the channel: hang up on what still runs, as a
	// terminal would.
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		_ = syscall.Kill(-p.Pid, syscall.SIGHUP)
	}
}

var sshSignals = map[string]syscall.Signal{"INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "HUP": syscall.SIGHUP,
	"QUIT": syscall.SIGQUIT, "KILL": syscall.SIGKILL, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "ALRM": syscall.SIGALRM}

func (s *sshSession) signal(name string) bool {
	sig, ok := sshSignals[name]
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if !ok || p == nil {
		return false
	}
	return syscall.Kill(-p.Pid, sig) == nil
}

// start runs the session's command (a login shell for "shell").
func (s *sshSession) start(shell bool, command string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("the session already runs a command")
	}
	s.started = true
	argv, err := sessionArgv(shell, command, hasShell())
	if err != nil {
		return err
	}
	env := sessionEnv(readImageConfig(), s.env, s.pty)
	path, err := lookPathIn(argv[0], envValue(env, "PATH"))
	if err != nil {
		return err
	}
	attr := &syscall.SysProcAttr{}
	var files []*os.File
	var closeAfter []*os.File
	if s.pty != nil {
		ptm, pts, err := openPTY()
		if err != nil {
			return err
		}
		_ = unix.IoctlSetWinsize(int(ptm.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(s.pty.Rows), Col: uint16(s.pty.Cols)})
		s.ptm = ptm
		files = []*os.File{pts, pts, pts}
		closeAfter = []*os.File{pts}
		attr.Setsid, attr.Setctty, attr.Ctty = true, true, 0
	} else {
		attr.Setpgid = true
		inR, inW, err := os.Pipe()
		if err != nil {
			return err
		}
		outR, outW, err := os.Pipe()
		if err != nil {
			return err
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			return err
		}
		files = []*os.File{inR, outW, errW}
		closeAfter = []*os.File{inR, outW, errW}
		go func() {
			_, _ = io.Copy(inW, s.ch)
			inW.Close()
		}()
		s.pump(outR, s.ch)
		s.pump(errR, s.ch.Stderr())
	}
	dir := "/root"
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		dir = "/"
	}
	p, err := os.StartProcess(path, argv, &os.ProcAttr{Dir: dir, Env: env, Files: files, Sys: attr})
	for _, f := range closeAfter {
		f.Close()
	}
	if err != nil {
		if s.ptm != nil {
			s.ptm.Close()
		}
		return fmt.Errorf("starting %s: %w", argv[0], err)
	}
	s.proc = p
	if s.ptm != nil {
		ptm := s.ptm
		go func() { _, _ = io.Copy(ptm, s.ch) }()
		s.pump(ptm, s.ch)
	}
	go s.wait(p)
	return nil
}

// pumps counts the output copies a session waits for before it reports
// the exit status.
func (s *sshSession) pump(r *os.File, w io.Writer) {
	s.pumps.Add(1)
	go func() {
		defer s.pumps.Done()
		_, _ = io.Copy(w, r) // a PTY's master reads EIO once the last slave closes
		r.Close()
	}()
}

func (s *sshSession) wait(p *os.Process) {
	st, err := p.Wait()
	// What the command left in the background may keep its output open:
	// give the copies a moment, then report.
	done := make(chan struct{})
	go func() { s.pumps.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
	code, sig := 255, ""
	if err == nil {
		ws, _ := st.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			sig = signalName(ws.Signal())
		} else {
			code = ws.ExitStatus()
		}
	}
	s.exit(code, sig)
}

// exit reports the status and closes the channel.
func (s *sshSession) exit(code int, sig string) {
	if sig != "" {
		_, _ = s.ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Msg, Lang  string
		}{sig, false, "", ""}))
	} else {
		_, _ = s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
	}
	_ = s.ch.CloseWrite()
	_ = s.ch.Close()
}

func signalName(sig syscall.Signal) string {
	for n, s := range sshSignals {
		if s == sig {
			return n
		}
	}
	return strings.TrimPrefix(unix.SignalName(sig), "SIG")
}

// hasShell reports whether the image has /bin/sh.
func hasShell() bool {
	fi, err := os.Stat("/bin/sh")
	return err == nil && !fi.IsDir() && fi.Mode().Perm()&0o111 != 0
}

// sessionArgv is what runs for a session: with a shell, what OpenSSH
// would run; without one (distroless), banger's own command lines read
// as words.
func sessionArgv(shell bool, command string, haveShell bool) ([]string, error) {
	switch {
	case haveShell && shell:
		return []string{"/bin/sh", "-l"}, nil
	case haveShell:
		return []string{"/bin/sh", "-c", command}, nil
	case shell:
		return nil, errors.New("this image has no shell (/bin/sh); give a command, as in banger vm ssh NAME -- CMD")
	}
	return commandWords(command)
}

// commandWords reads a command line without a shell: banger's exec-helper
// form (see guestssh.Exec.CommandLine) runs the helper; otherwise the
// line is POSIX words, an optional leading "exec" dropped.
func commandWords(command string) ([]string, error) {
	h := guest.ExecPath
	prefix := "if [ -x " + h + " ]; then exec " + h + " exec "
	if rest, ok := strings.CutPrefix(command, prefix); ok {
		if i := strings.Index(rest, "; fi; "); i >= 0 {
			words, err := splitWords(rest[:i])
			if err != nil {
				return nil, err
			}
			return append([]string{h, "exec"}, words...), nil
		}
	}
	words, err := splitWords(command)
	if err != nil {
		return nil, err
	}
	if len(words) > 0 && words[0] == "exec" {
		words = words[1:]
	}
	if len(words) == 0 {
		return nil, errors.New("empty command")
	}
	return words, nil
}

// splitWords splits a line into words with sh's quoting: '...', "..."
// (with \ escaping " \ $ `) and \ outside quotes. Operators are not
// understood: without a shell there is nothing to run them.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated ' in the command")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New(`unterminated " in the command`)
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case strings.IndexByte(";&|<>()$`", c) >= 0:
			return nil, fmt.Errorf("this image has no shell to run %q; give the command as words", string(c))
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// sessionEnv is a session's environment: a login's basics, the image's
// Env, then what the client sent.
func sessionEnv(img *guest.ImageConfig, sent []string, pty *ptyRequest) []string {
	env := []string{"PATH=" + defaultPath, "HOME=/root", "USER=root", "LOGNAME=root", "SHELL=/bin/sh"}
	if img != nil {
		env = append(env, img.Env...)
	}
	if pty != nil && pty.Term != "" {
		env = append(env, "TERM="+pty.Term)
	}
	return dedupEnv(append(env, sent...))
}

// dedupEnv keeps the last value of each variable, in first-seen order.
func dedupEnv(env []string) []string {
	idx := map[string]int{}
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// readImageConfig is the image config the agent wrote at boot, or nil.
func readImageConfig() *guest.ImageConfig {
	b, err := os.ReadFile(guest.ImageConfigPath)
	if err != nil {
		return nil
	}
	var c guest.ImageConfig
	if json.Unmarshal(b, &c) != nil {
		return nil
	}
	return &c
}

// openPTY opens a new pseudo-terminal pair from /dev/ptmx.
func openPTY() (ptm, pts *os.File, err error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening /dev/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("unlocking the pty: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("naming the pty: %w", err)
	}
	name := "/dev/pts/" + strconv.Itoa(n)
	sfd, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("opening %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), os.NewFile(uintptr(sfd), name), nil
}
