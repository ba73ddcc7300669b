package integration

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDoctorWithoutQEMU runs `banger doctor --json` with no VMM on PATH:
// the output parses, QEMU's absence fails with the apt-get fix, every
// problem has a fix, and banger exits 1.
func TestDoctorWithoutQEMU(t *testing.T) {
	e := newEnv(t)
	r := e.banger("doctor", "--json")
	if r.code != 1 {
		t.Fatalf("doctor: exit %d, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	var checks []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		Detail string `json:"detail"`
		Fix    string `json:"fix"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &checks); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, r.stdout)
	}
	found := false
	for _, c := range checks {
		t.Logf("%-22s %-4s %s | %s", c.Name, c.Status, c.Detail, c.Fix)
		switch c.Status {
		case "OK":
			if c.Fix != "" {
				t.Errorf("%s is OK but has a fix %q", c.Name, c.Fix)
			}
		case "WARN", "FAIL":
			if c.Fix == "" {
				t.Errorf("%s is %s without a fix", c.Name, c.Status)
			}
		default:
			t.Errorf("%s has status %q", c.Name, c.Status)
		}
		if c.Name == "qemu-system-x86_64" {
			found = true
			if c.Status != "FAIL" || !strings.Contains(c.Fix, "apt-get install qemu-system-x86") {
				t.Errorf("qemu check: %+v; want FAIL with the apt-get fix", c)
			}
		}
	}
	if !found {
		t.Error("doctor names no qemu-system-x86_64 check")
	}
	if !strings.Contains(r.stderr, "failed") {
		t.Errorf("stderr %q does not say checks failed", r.stderr)
	}
}
