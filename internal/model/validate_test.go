package model

import (
	"errors"
	"strings"
	"testing"
)

// One case per rule each validator enforces.
func TestValidateName(t *testing.T) {
	cases := []struct {
		name, in, wantErr string
	}{
		{"simple", "dev", ""},
		{"digits and hyphen", "a-1", ""},
		{"single char", "a", ""},
		{"max length", strings.Repeat("a", 63), ""},
		{"empty", "", "must not be empty"},
		{"too long", strings.Repeat("a", 64), "limit is 63"},
		{"leading hyphen", "-dev", "starts or ends"},
		{"trailing hyphen", "dev-", "starts or ends"},
		{"uppercase", "Dev", "contains 'D'"},
		{"underscore", "my_vm", "contains '_'"},
		{"dot", "a.b", "contains '.'"},
		{"space", "a b", "contains ' '"},
		{"slash (path injection)", "../etc", "contains '.'"},
		{"shell metachar", "a;rm", "contains ';'"},
		{"non-ascii", "vé", "contains 'é'"},
		{"newline", "a\nb", "contains '\\n'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateName(c.in)
			checkErr(t, err, c.wantErr)
		})
	}
}

func TestValidateVCPUs(t *testing.T) {
	checkErr(t, ValidateVCPUs(1), "")
	checkErr(t, ValidateVCPUs(32), "")
	checkErr(t, ValidateVCPUs(0), "out of range")
	checkErr(t, ValidateVCPUs(33), "out of range")
	checkErr(t, ValidateVCPUs(-1), "out of range")
}

func TestValidateMemory(t *testing.T) {
	checkErr(t, ValidateMemory(128, 4096), "")
	checkErr(t, ValidateMemory(4096, 4096), "")
	checkErr(t, ValidateMemory(127, 4096), "below the minimum")
	checkErr(t, ValidateMemory(4097, 4096), "more than this host")
	checkErr(t, ValidateMemory(1<<30, 0), "") // host size unknown
}

func TestValidateDisk(t *testing.T) {
	checkErr(t, ValidateDisk(1024), "")
	checkErr(t, ValidateDisk(1023), "below the minimum of 1G")
}

func TestValidateImageRef(t *testing.T) {
	checkErr(t, ValidateImageRef("debian-12"), "")
	checkErr(t, ValidateImageRef("ghcr.io/org/repo:v1.2"), "")
	checkErr(t, ValidateImageRef("repo@sha256:abcdef0123"), "")
	checkErr(t, ValidateImageRef(""), "must not be empty")
	checkErr(t, ValidateImageRef(strings.Repeat("a", 256)), "limit is 255")
	checkErr(t, ValidateImageRef("a b"), "contains ' '")
	checkErr(t, ValidateImageRef("a;b"), "contains ';'")
	checkErr(t, ValidateImageRef("/etc/passwd"), "not an image name")
	checkErr(t, ValidateImageRef("../../x"), "not an image name")
}

func TestParseSize(t *testing.T) {
	ok := map[string]int64{
		"2048": 2048, "512M": 512, "512m": 512, "512MiB": 512, "512MB": 512,
		"2G": 2048, "2g": 2048, "2GiB": 2048, "1.5G": 1536, "1T": 1 << 20,
		"1024K": 1, "1K": 1, " 4G ": 4096,
	}
	for in, want := range ok {
		got, err := ParseSize("memory", in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":             "must not be empty",
		"abc":          "not a size",
		"12X":          "not a size",
		"G":            "not a size",
		"-1G":          "negative",
		"1e3":          "not a size",
		"0x10":         "not a size",
		"NaN":          "not a size",
		"1.2.3":        "not a size",
		"1GG":          "unknown unit",
		"99999999999T": "too large",
	}
	for in, want := range bad {
		_, err := ParseSize("memory", in)
		checkErr(t, err, want)
		if err != nil && !strings.HasPrefix(err.Error(), "memory: ") {
			t.Errorf("ParseSize(%q) error %q does not name the field", in, err)
		}
	}
}

func TestFormatMiB(t *testing.T) {
	for mib, want := range map[int64]string{512: "512M", 1024: "1G", 1536: "1536M", 1 << 20: "1T"} {
		if got := FormatMiB(mib); got != want {
			t.Errorf("FormatMiB(%d) = %q, want %q", mib, got, want)
		}
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Errorf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Errorf("want error containing %q, got nil", want)
		return
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("error %v is not ErrInvalid", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
}

func TestParsePortMaps(t *testing.T) {
	got, err := ParsePortMaps([]string{"8080:80", "2222:22/tcp"})
	if err != nil || len(got) != 2 || got[0] != (PortMap{8080, 80, "tcp"}) || got[1].String() != "2222:22/tcp" {
		t.Fatalf("got %+v, %v", got, err)
	}
	for _, bad := range []string{"80", "a:80", "8080:b", "0:80", "8080:65536", "53:53/udp", "1:2:3", "8080:80", ""} {
		specs := []string{bad}
		if bad == "8080:80" {
			specs = []string{"8080:80", "8080:81"}
		}
		if _, err := ParsePortMaps(specs); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v: %v, want ErrInvalid", specs, err)
		}
	}
}
