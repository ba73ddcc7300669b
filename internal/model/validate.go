package model

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Limits on what a VM may ask for.
const (
	MaxNameLen   = 63
	MinVCPUs     = 1
	MaxVCPUs     = 32
	MinMemoryMiB = 128
	MinDiskMiB   = 1024
	maxRefLen    = 255
)

// ValidateName checks that name is a DNS label: 1–63 characters of a–z, 0–9
// and '-', not starting or ending with '-'. VM names become host names and
// `<name>.vm` DNS records, so nothing else is allowed.
func ValidateName(name string) error {
	const hint = "; use 1–63 lowercase letters, digits or '-', not starting or ending with '-'"
	switch {
	case name == "":
		return invalid("name", "must not be empty"+hint)
	case len(name) > MaxNameLen:
		return invalid("name", fmt.Sprintf("%q is %d characters long, the limit is %d", name, len(name), MaxNameLen))
	case name[0] == '-' || name[len(name)-1] == '-':
		return invalid("name", fmt.Sprintf("%q starts or ends with '-'", name)+hint)
	}
	for _, r := range name {
		if !isLabelRune(r) {
			return invalid("name", fmt.Sprintf("%q contains %q", name, r)+hint)
		}
	}
	return nil
}

func isLabelRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-'
}

// ValidateVCPUs checks the vCPU count.
func ValidateVCPUs(n int) error {
	if n < MinVCPUs || n > MaxVCPUs {
		return invalid("vcpus", fmt.Sprintf("%d is out of range; give %d to %d", n, MinVCPUs, MaxVCPUs))
	}
	return nil
}

// ValidateMemory checks a memory size in MiB against the minimum and the
// host's RAM (hostMiB; 0 means unknown and skips the upper check).
func ValidateMemory(mib, hostMiB int64) error {
	if mib < MinMemoryMiB {
		return invalid("memory", fmt.Sprintf("%d MiB is below the minimum of %d MiB", mib, MinMemoryMiB))
	}
	if hostMiB > 0 && mib > hostMiB {
		return invalid("memory", fmt.Sprintf("%d MiB is more than this host's %d MiB of RAM", mib, hostMiB))
	}
	return nil
}

// ValidateDisk checks a disk size in MiB against the 1 GiB minimum.
func ValidateDisk(mib int64) error {
	if mib < MinDiskMiB {
		return invalid("disk", fmt.Sprintf("%s is below the minimum of 1G", FormatMiB(mib)))
	}
	return nil
}

// ValidateImageRef checks an image reference: a catalog name such as
// debian-12, or an OCI reference such as registry/repo:tag or repo@sha256:….
func ValidateImageRef(ref string) error {
	if ref == "" {
		return invalid("image", "must not be empty")
	}
	if len(ref) > maxRefLen {
		return invalid("image", fmt.Sprintf("reference is %d characters long, the limit is %d", len(ref), maxRefLen))
	}
	for _, r := range ref {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._:/@+", r)
		if !ok {
			return invalid("image", fmt.Sprintf("%q contains %q; an image is a name like debian-12 or a reference like registry/repo:tag", ref, r))
		}
	}
	if strings.Contains(ref, "..") || strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, ".") {
		return invalid("image", fmt.Sprintf("%q is not an image name; local files are registered with `banger image register`", ref))
	}
	return nil
}

// IsImageReference reports whether ref reads as a registry reference
// (registry/repo:tag, @sha256:...) rather than a catalog or local name:
// it names a repository path, a tag or a digest.
func IsImageReference(ref string) bool { return strings.ContainsAny(ref, "/:@") }

// ParseSize parses a size typed by a user and returns it in MiB. A bare
// number is MiB; K, M, G and T suffixes (optionally followed by "iB" or "B")
// are binary units. Fractions are allowed ("1.5G") and rounded up to a MiB.
func ParseSize(field, s string) (int64, error) {
	const hint = "; use a number with an optional unit, like 512M, 2G or 2048 (MiB)"
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, invalid(field, "must not be empty"+hint)
	}
	num := strings.TrimRight(in, "KkMmGgTtIiBb")
	unit := strings.ToLower(strings.TrimPrefix(in, num))
	unit = strings.TrimSuffix(strings.TrimSuffix(unit, "b"), "i")
	var perMiB float64
	switch unit {
	case "":
		perMiB = 1
	case "k":
		perMiB = 1.0 / 1024
	case "m":
		perMiB = 1
	case "g":
		perMiB = 1024
	case "t":
		perMiB = 1024 * 1024
	default:
		return 0, invalid(field, fmt.Sprintf("%q has an unknown unit", s)+hint)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || strings.ContainsAny(num, "eExXpP_") {
		return 0, invalid(field, fmt.Sprintf("%q is not a size", s)+hint)
	}
	if v < 0 {
		return 0, invalid(field, fmt.Sprintf("%q is negative", s)+hint)
	}
	mib := math.Ceil(v * perMiB)
	if mib > 1<<40 {
		return 0, invalid(field, fmt.Sprintf("%q is too large", s))
	}
	return int64(mib), nil
}

// FormatMiB renders a MiB count the way ParseSize reads it back.
func FormatMiB(mib int64) string {
	switch {
	case mib >= 1024*1024 && mib%(1024*1024) == 0:
		return strconv.FormatInt(mib/(1024*1024), 10) + "T"
	case mib >= 1024 && mib%1024 == 0:
		return strconv.FormatInt(mib/1024, 10) + "G"
	default:
		return strconv.FormatInt(mib, 10) + "M"
	}
}
