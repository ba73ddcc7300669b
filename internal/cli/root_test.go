package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Every mistyped verb, at any level, is a usage error (exit 2) with a
// suggestion; so is a flag value that does not parse.
func TestUsageErrorsSuggestAndExit2(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"vmm", "list"}, "did you mean vm?"},
		{[]string{"imag"}, "did you mean image?"},
		{[]string{"vm", "craete", "x"}, "did you mean create?"},
		{[]string{"vm", "lst"}, "did you mean list"},
		{[]string{"workspace", "prepar"}, "did you mean prepare?"},
		{[]string{"op", "stauts"}, "did you mean status?"},
		{[]string{"vm", "create", "x", "--vcpus", "abc"}, `invalid argument "abc" for "--vcpus"`},
		{[]string{"vm", "cp", "a", "b"}, "exactly one of SRC and DST"},
	} {
		var out, errb bytes.Buffer
		code := Run(context.Background(), append([]string{"--socket", "/nonexistent/sock"}, tc.args...), Streams{Out: &out, Err: &errb}, "test")
		if code != ExitUsage || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("banger %v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errb.String(), ExitUsage, tc.want)
		}
	}
}
