package guestssh

import (
	"os/exec"
	"strings"
	"testing"
)

// Without the agent's helper (as here), the command line falls back to a
// plain exec that still honours argv, env and workdir exactly.
func TestCommandLineFallback(t *testing.T) {
	e := Exec{Argv: []string{"sh", "-c", `printf '%s|%s|%s' "$1" "$FOO" "$PWD"`, "x", "a 'b' $c"}, Env: []string{"FOO=x y"}, Dir: "/"}
	out, err := exec.Command("sh", "-c", e.CommandLine()).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", e.CommandLine(), err, out)
	}
	if string(out) != "a 'b' $c|x y|/" {
		t.Fatalf("got %q", out)
	}
	if tty := (Exec{Argv: []string{"top"}, TTY: true}).CommandLine(); strings.Contains(tty, "banger-agent") {
		t.Fatalf("a tty command goes through the helper: %s", tty)
	}
}
