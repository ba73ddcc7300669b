package model

import (
	"errors"
	"strings"
	"testing"
)

// Sizes either parse to a MiB count that is not negative or fail as
// invalid input; nothing panics.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512", "1G", "1.5G", "2GiB", "0", "-1G", "1e9T", "G", "", "9223372036854775807T", "1.", ".5M"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize("memory", s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseSize(%q): error %v is not ErrInvalid", s, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
	})
}

// A valid name is always a DNS label; invalid ones say so.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"dev", "a-b", "-a", "a-", "A", "a_b", strings.Repeat("a", 64), "ünï"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateName(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ValidateName(%q): %v", s, err)
			}
			return
		}
		if len(s) == 0 || len(s) > MaxNameLen || s[0] == '-' || s[len(s)-1] == '-' || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			t.Fatalf("ValidateName accepted %q", s)
		}
	})
}
