package e2e

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// start runs the CLI inside the namespace without waiting for it.
func (w *world) start(args ...string) (*exec.Cmd, *bufio.Reader) {
	w.t.Helper()
	full := append([]string{"netns", "exec", w.ns, filepath.Join(binDir, "banger"),
		"--socket", w.socket, "--state-dir", w.stateDir, "--config", w.config}, args...)
	cmd := exec.Command("ip", full...)
	cmd.Env = append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH"), "XDG_CACHE_HOME="+filepath.Join(w.dir, "cache"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, bufio.NewReader(out)
}

// waitLine reads lines until one equals want.
func waitLine(t *testing.T, r *bufio.Reader, want string) {
	t.Helper()
	got := make(chan error, 1)
	go func() {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				got <- err
				return
			}
			if strings.TrimSpace(line) == want {
				got <- nil
				return
			}
		}
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("no %q within 5 minutes", want)
	}
}

// waitNoVMs waits until the daemon has no VMs and no VMM runs.
func (w *world) waitNoVMs(what string) {
	w.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for len(w.listQuiet()) != 0 || len(w.vmmPIDs()) != 0 {
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: vms %+v, VMMs %v still there after 60 s", what, w.listQuiet(), w.vmmPIDs())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// `vm run --rm` deletes its VM however the client ends, and the client's
// signals reach the guest command.
func TestRunRmLifetimesAndSignals(t *testing.T) {
	w := newWorld(t)

	// Ctrl-C: the guest's trap runs, its status comes back, the VM goes.
	cmd, out := w.start("vm", "run", "--rm", "--", "sh", "-c", `trap 'echo got-int; exit 5' INT; echo ready; sleep 300 & wait`)
	waitLine(t, out, "ready")
	_ = cmd.Process.Signal(syscall.SIGINT)
	rest, _ := io.ReadAll(out)
	if code := exitCode(cmd.Wait()); code != 5 || !strings.Contains(string(rest), "got-int") {
		t.Fatalf("SIGINT: exit %d, output %q; want the guest trap's exit 5 and got-int", code, rest)
	}
	w.waitNoVMs("after SIGINT")

	// SIGTERM of the client: the guest command gets TERM (143).
	cmd, out = w.start("vm", "run", "--rm", "--", "sh", "-c", `echo ready; exec sleep 300`)
	waitLine(t, out, "ready")
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if code := exitCode(cmd.Wait()); code != 143 {
		t.Fatalf("SIGTERM: exit %d, want 143", code)
	}
	w.waitNoVMs("after SIGTERM")

	// SIGKILL of the client: nothing of it runs any more, yet the VM goes
	// because it was tied to the client's connection.
	cmd, out = w.start("vm", "run", "--rm", "--", "sh", "-c", `echo ready; sleep 300`)
	waitLine(t, out, "ready")
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	w.waitNoVMs("after SIGKILL of the client")

	// A broken pipe on the host side.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pipe := exec.CommandContext(ctx, "ip", "netns", "exec", w.ns, "sh", "-c",
		`"$@" | head -2`, "pipe", filepath.Join(binDir, "banger"), "--socket", w.socket, "--state-dir", w.stateDir, "--config", w.config,
		"vm", "run", "--rm", "--", "seq", "1", "100000000")
	got, err := pipe.Output()
	if err != nil || string(got) != "1\n2\n" {
		t.Fatalf("vm run | head -2: %q, %v", got, err)
	}
	w.waitNoVMs("after SIGPIPE")

	// Without --rm the VM stays, and banger says so.
	r := w.banger("vm", "run", "--name", "stays", "-e", "FOO=a b", "-w", "/tmp", "--", "sh", "-c", `echo "$FOO@$PWD"`)
	if r.code != 0 || r.stdout != "a b@/tmp\n" || !strings.Contains(r.stderr, "vm stays stays") {
		t.Fatalf("vm run without --rm: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if out := w.ok("vm", "ssh", "stays", "--user", "nobody", "--", "id", "-un"); out != "nobody\n" {
		t.Fatalf("--user nobody: %q", out)
	}
	if out := w.ok("vm", "ssh", "stays", "--", "env", "FOO=a b", "printenv", "FOO"); out != "a b\n" {
		t.Fatalf("argv with spaces: %q", out)
	}

	// prune leaves running VMs alone and deletes stopped ones.
	if out := w.ok("vm", "prune"); out != "" {
		t.Fatalf("prune deleted a running vm: %q", out)
	}
	if r := w.banger("vm", "prune", "--all"); r.code != 2 || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("prune --all without a terminal or --force: exit %d, %q", r.code, r.stderr)
	}
	if out := w.ok("vm", "list", "-q", "--filter", "state=running"); out != "stays\n" {
		t.Fatalf("vm list -q --filter state=running: %q", out)
	}
	if out := w.ok("vm", "list", "--format", "{{.Name}}:{{.State}}"); out != "stays:running\n" {
		t.Fatalf("vm list --format: %q", out)
	}

	// Plain OpenSSH reaches the VM with the config banger prints.
	cfgFile := filepath.Join(w.dir, "ssh_config")
	if err := os.WriteFile(cfgFile, []byte(w.ok("vm", "ssh-config", "stays")), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", w.ns, "ssh", "-F", cfgFile, "-o", "BatchMode=yes", "stays.vm", "hostname").CombinedOutput(); err != nil || string(out) != "stays\n" {
		t.Fatalf("ssh with banger's ssh-config: %v\n%s", err, out)
	}

	// A VM that dies under a command ends the client within seconds.
	cmd, out = w.start("vm", "ssh", "stays", "--", "sh", "-c", "echo ready; sleep 300")
	waitLine(t, out, "ready")
	_ = syscall.Kill(w.handles(w.show("stays")).PID, syscall.SIGKILL)
	died := time.Now()
	if code := exitCode(cmd.Wait()); code != 1 {
		t.Fatalf("vm ssh on a vm that died: exit %d, want 1", code)
	}
	if d := time.Since(died); d > 20*time.Second {
		t.Fatalf("vm ssh took %s to notice its vm died", d)
	}
	deadline := time.Now().Add(30 * time.Second)
	for w.show("stays").State != "stopped" {
		if time.Now().After(deadline) {
			t.Fatalf("the dead vm is still %s", w.show("stays").State)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if out := w.ok("vm", "prune"); out != "stays\n" {
		t.Fatalf("prune of a stopped vm: %q", out)
	}
	w.waitNoVMs("after prune")
}
