// Package testimage finds the debian-12 guest kernel that the end-to-end
// suite builds into its image cache, for tests elsewhere that parse or boot
// a real kernel. scripts/test runs the end-to-end suite first, so under
// CI=true the kernel is always there and its absence is a failure.
package testimage

import (
	"os"
	"path/filepath"
	"testing"
)

// DefaultCache is where the end-to-end suite caches image builds unless
// BANGER_E2E_IMAGE_CACHE says otherwise.
const DefaultCache = "/var/cache/banger-test"

// Cache is the image cache directory the end-to-end suite uses.
func Cache() string {
	if c := os.Getenv("BANGER_E2E_IMAGE_CACHE"); c != "" {
		return c
	}
	return DefaultCache
}

// Kernel returns a cached debian-12 kernel (bzImage). Without one it skips
// the test, or fails it under CI=true.
func Kernel(t testing.TB) string {
	t.Helper()
	kernels, _ := filepath.Glob(filepath.Join(Cache(), "*", "vmlinuz"))
	if len(kernels) > 0 {
		return kernels[0]
	}
	msg := "no cached debian-12 kernel in " + Cache() + " (BANGER_E2E_IMAGE_CACHE); the end-to-end suite (go test ./test/e2e) builds one"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
