package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsWhenFileAbsent(t *testing.T) {
	c, err := Load(filepath.Join(t.TempDir(), "none.toml"), false)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subnet.String() != "172.16.0.0/24" || c.SocketGroup != "banger" || c.DefaultVCPUs != 2 ||
		c.DefaultMemoryMiB != 1024 || c.DefaultDiskMiB != 8192 || c.StopTimeout != 15*time.Second ||
		c.DefaultImage != "debian-12" || c.OpRetention != time.Hour {
		t.Fatalf("defaults: %+v", c)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none.toml"), true); err == nil {
		t.Fatal("an explicitly named missing file was accepted")
	}
}

func TestEveryKey(t *testing.T) {
	c, err := Load(write(t, `
socket_group = "wheel"
subnet = "10.77.0.0/16"
default_image = "alpine"
default_vcpus = 4
default_memory = "2G"
default_disk = "20G"
stop_timeout = "30s"
op_retention = "10m"
log_level = "debug"
`), true)
	if err != nil {
		t.Fatal(err)
	}
	if c.SocketGroup != "wheel" || c.Subnet.String() != "10.77.0.0/16" || c.DefaultImage != "alpine" ||
		c.DefaultVCPUs != 4 || c.DefaultMemoryMiB != 2048 || c.DefaultDiskMiB != 20480 ||
		c.StopTimeout != 30*time.Second || c.OpRetention != 10*time.Minute || c.LogLevel.String() != "DEBUG" {
		t.Fatalf("parsed: %+v", c)
	}
}

func TestRejects(t *testing.T) {
	cases := map[string]string{
		`subnett = "x"`:            "unknown key(s) subnett",
		`subnet = "nope"`:          "not an IPv4 CIDR",
		`subnet = "fd00::/64"`:     "not an IPv4 CIDR",
		`subnet = "10.0.0.0/8"`:    "between /16 and /29",
		`default_vcpus = 0`:        "default_vcpus",
		`default_memory = "1X"`:    "default_memory",
		`default_disk = "100M"`:    "default_disk",
		`stop_timeout = "-1s"`:     "stop_timeout",
		`op_retention = "forever"`: "op_retention",
		`log_level = "loud"`:       "log_level",
		`default_image = "../x"`:   "default_image",
		`default_vcpus = "two"`:    "reading config",
		`this is not toml`:         "reading config",
	}
	for body, want := range cases {
		_, err := Load(write(t, body), true)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want error containing %q", body, err, want)
		}
	}
}

func TestGroupID(t *testing.T) {
	if gid, ok := GroupID("root"); !ok || gid != 0 {
		t.Fatalf("GroupID(root) = %d, %v", gid, ok)
	}
	if _, ok := GroupID("no-such-group-banger"); ok {
		t.Fatal("a missing group was found")
	}
}

func TestBareNumberSizesAndDidYouMean(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/c.toml"
	if err := os.WriteFile(p, []byte("default_memory = 2048\ndefault_disk = \"4G\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p, true)
	if err != nil || c.DefaultMemoryMiB != 2048 || c.DefaultDiskMiB != 4096 {
		t.Fatalf("bare number: %+v, %v", c, err)
	}
	if err := os.WriteFile(p, []byte("default_memroy = \"1G\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p, true); err == nil || !strings.Contains(err.Error(), `did you mean "default_memory"`) {
		t.Fatalf("typo: %v", err)
	}
}

// Every key of the file is sorted into live or restart by Diff: a key
// added to File without a place there would be silently ignored by a
// reload.
func TestDiffCoversEveryKey(t *testing.T) {
	old := Config{}
	cur := Config{
		SocketGroup: "g", Subnet: netip.MustParsePrefix("10.0.0.0/24"), DefaultImage: "i", DefaultVCPUs: 1,
		DefaultMemoryMiB: 1, DefaultDiskMiB: 1, StopTimeout: 1, OpRetention: 1, LogLevel: 1, Bridge: "b", IsolateVMs: true,
		VMM: "v", OverlayMiB: 1, BootTimeout: 1, DebianMirror: "m", DebianPackages: []string{"p"},
		ImageCacheDir: "c", FirecrackerBinary: "f", Jailer: true, JailerBinary: "j", JailerUID: 1,
		JailerGID: 1, JailerChrootBase: "r",
	}
	c := Diff(old, cur)
	got := map[string]bool{}
	for _, k := range append(c.Live, c.Restart...) {
		got[k] = true
	}
	ft := reflect.TypeOf(File{})
	for i := range ft.NumField() {
		key := ft.Field(i).Tag.Get("toml")
		if !got[key] {
			t.Errorf("config key %q is neither live nor restart-only in Diff", key)
		}
	}
	if len(got) != ft.NumField() {
		t.Errorf("Diff names %d keys, the file has %d", len(got), ft.NumField())
	}
	if d := Diff(cur, cur); len(d.Live)+len(d.Restart) != 0 {
		t.Errorf("no change reported as %+v", d)
	}
}
