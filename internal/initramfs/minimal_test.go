package initramfs

import (
	"bytes"
	"path/filepath"
	"testing"
)

func TestBuildMinimal(t *testing.T) {
	agent := filepath.Join(t.TempDir(), "banger-agent")
	writeFile(t, agent, []byte("#!agent binary, 27 bytes\n"))
	var buf bytes.Buffer
	if err := BuildMinimal(&buf, agent); err != nil {
		t.Fatal(err)
	}
	entries := readCPIO(t, buf.Bytes())
	if init := entries["init"]; init.mode != 0o100755 || string(init.data) != "#!agent binary, 27 bytes\n" {
		t.Errorf("init: mode %o, data %q", init.mode, init.data)
	}
	if c := entries["dev/console"]; c.mode != 0o020600 || c.major != 5 || c.minor != 1 {
		t.Errorf("dev/console: mode %o, rdev %d:%d; want char 5:1", c.mode, c.major, c.minor)
	}
	for _, d := range []string{"dev", "proc", "sys", "tmp"} {
		if e, ok := entries[d]; !ok || e.mode&0o170000 != 0o040000 {
			t.Errorf("directory %s missing or not a directory (mode %o)", d, e.mode)
		}
	}
	for name, e := range entries {
		if e.mode&0o170000 == 0o100000 && name != "init" {
			t.Errorf("archive holds file %s; a minimal archive holds only /init", name)
		}
	}
	if err := BuildMinimal(&buf, filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing agent binary was accepted")
	}
}
