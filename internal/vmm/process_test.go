package vmm

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFileTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	_ = os.WriteFile(p, []byte("line1\nline2 the end\n"), 0o644)
	if got := FileTail(p, 7); got != "…the end" {
		t.Fatalf("FileTail = %q", got)
	}
	if got := FileTail(p+".missing", 10); got != "no output" {
		t.Fatalf("FileTail of a missing file = %q", got)
	}
}
