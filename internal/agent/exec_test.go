package agent

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseExecArgs(t *testing.T) {
	o, err := ParseExecArgs([]string{"--env", "A=b c", "--workdir", "/w", "--user", "nobody", "--", "echo", "--", "x"})
	if err != nil || len(o.Env) != 1 || o.Env[0] != "A=b c" || o.Dir != "/w" || o.User != "nobody" || len(o.Command) != 3 || o.Command[1] != "--" {
		t.Fatalf("%+v, %v", o, err)
	}
	for _, bad := range [][]string{{"echo"}, {"--"}, {"--env", "novalue", "--", "x"}, {"--bogus", "--", "x"}} {
		if _, err := ParseExecArgs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestExecStatusAndSignals(t *testing.T) {
	var errb bytes.Buffer
	if got := Exec(ExecOptions{Command: []string{"sh", "-c", "exit 7"}}, &errb); got != 7 {
		t.Fatalf("exit 7: got %d", got)
	}
	if got := Exec(ExecOptions{Command: []string{"sh", "-c", `kill -TERM $$`}}, &errb); got != 143 {
		t.Fatalf("killed by TERM: got %d, want 143", got)
	}
	if got := Exec(ExecOptions{Command: []string{"no-such-command-here"}}, &errb); got != 127 {
		t.Fatalf("missing command: got %d", got)
	}
	if got := Exec(ExecOptions{Env: []string{"BANGER_X=a b"}, Dir: "/", Command: []string{"sh", "-c", `[ "$BANGER_X" = "a b" ] && [ "$PWD" = / ]`}}, &errb); got != 0 {
		t.Fatalf("env/workdir: got %d", got)
	}
	// A SIGINT this process receives (as sshd delivers the client's Ctrl-C)
	// reaches the whole group: sleep dies and the shell's trap runs.
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = syscall.Kill(os.Getpid(), syscall.SIGINT)
	}()
	start := time.Now()
	if got := Exec(ExecOptions{Command: []string{"sh", "-c", `trap 'exit 3' INT; sleep 20; exit 9`}}, &errb); got != 3 {
		t.Fatalf("after SIGINT: got %d, want the trap's 3 (stderr %q)", got, errb.String())
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("sleep was not interrupted")
	}
}

// A background child the command leaves behind (holding its output)
// neither keeps Exec waiting nor is killed: the session ends with the
// command, as docker exec's does.
func TestExecReturnsDespiteLeftovers(t *testing.T) {
	var errb bytes.Buffer
	pidFile := t.TempDir() + "/pid"
	start := time.Now()
	if got := Exec(ExecOptions{Command: []string{"sh", "-c", `sleep 30 & echo $! > ` + pidFile + `; exit 4`}}, &errb); got != 4 {
		t.Fatalf("got %d", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Exec waited %s for a background child", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	defer func() { _ = syscall.Kill(pid, syscall.SIGKILL) }()
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the background child was killed: %v", err)
	}
}
