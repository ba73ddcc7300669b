package vmm

import (
	"os"
	"strings"
)

// FileTail returns the last max bytes of a log file, trimmed, for error
// messages ("no output" when there is none).
func FileTail(path string, max int) string {
	b, err := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if err != nil || s == "" {
		return "no output"
	}
	if len(s) > max {
		s = "…" + s[len(s)-max:]
	}
	return s
}
