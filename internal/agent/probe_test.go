package agent

import "testing"

func TestProbeRequested(t *testing.T) {
	for cmdline, want := range map[string]bool{
		"console=ttyS0 panic=-1 banger.probe=1\n": true,
		"banger.probe=1":                true,
		"console=ttyS0 panic=-1":        false,
		"banger.probe=10 console=ttyS0": false,
		"xbanger.probe=1":               false,
		"":                              false,
	} {
		if got := probeRequested(cmdline); got != want {
			t.Errorf("probeRequested(%q) = %v, want %v", cmdline, got, want)
		}
	}
}
