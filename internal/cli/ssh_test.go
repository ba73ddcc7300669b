package cli

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The remote shell must receive each argument exactly as typed: one case
// per kind of injection the quoting blocks, checked by a real sh.
func TestShellQuoteRoundTrip(t *testing.T) {
	cases := [][]string{
		{"echo", "plain"},
		{"echo", "two words"},
		{"echo", "it's"},
		{"echo", "$(id)", "`id`", "$HOME"},
		{"echo", "a;b", "a&&b", "a|b", "a>b"},
		{"echo", ""},
		{"echo", "new\nline"},
		{"echo", "*", "?", "[a]"},
		{"echo", "'", "''", `"`, `\`},
	}
	for _, argv := range cases {
		line := shellQuote(argv)
		// printf prints each argument on its own line, delimited.
		out, err := exec.Command("sh", "-c", "printf '<%s>' "+shellQuote(argv[1:])).Output()
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		want := "<" + strings.Join(argv[1:], "><") + ">"
		if string(out) != want {
			t.Errorf("argv %q quoted as %q arrived as %q, want %q", argv, line, out, want)
		}
	}
}

func TestLastLines(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{{"a\nb\nc\n", 2, "b\nc\n"}, {"a\nb\nc", 1, "c"}, {"a\n", 5, "a\n"}, {"a\nb\n", 0, ""}, {"", 3, ""}} {
		if got := string(lastLines([]byte(c.in), c.n)); got != c.want {
			t.Errorf("lastLines(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

// The bash script works without the bash-completion package: it sources
// in a bare bash and brings its own _get_comp_words_by_ref.
func TestBashCompletionWithoutBashCompletion(t *testing.T) {
	var out strings.Builder
	code := Run(context.Background(), []string{"completion", "bash"}, Streams{Out: &out, Err: io.Discard}, "test")
	if code != 0 {
		t.Fatalf("completion bash: exit %d", code)
	}
	script := filepath.Join(t.TempDir(), "c.bash")
	if err := os.WriteFile(script, []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", `source "$1" && declare -F _get_comp_words_by_ref && complete -p banger`, "t", script)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	b, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(b), "complete") {
		t.Fatalf("sourcing in a bare bash: %v\n%s", err, b)
	}
}
