package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUserCatalog(t *testing.T) {
	dir := t.TempDir()
	path := CatalogPath(filepath.Join(dir, "config.toml"))
	c, err := LoadCatalog(path)
	if err != nil || len(c.Names()) != 1 {
		t.Fatalf("no catalog file: %v %v", c.Names(), err)
	}
	write := func(body string) {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`[images.alpine]
oci = "docker.io/library/alpine:3.20"

[images.shipped]
bundle = "https://example.com/shipped.tar.zst"
sha256 = "` + strings.Repeat("AB", 32) + `"

[images.build]
debian = "bookworm"
packages = ["build-essential"]
description = "Debian with compilers"
`)
	c, err = LoadCatalog(path)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := c.Lookup("alpine"); !ok || e.OCI != "docker.io/library/alpine:3.20" || !e.User {
		t.Errorf("alpine: %+v", e)
	}
	if e, ok := c.Lookup("build"); !ok || e.Suite != "bookworm" || e.Packages[0] != "build-essential" || e.Source != "Debian with compilers" {
		t.Errorf("build: %+v", e)
	}
	if e, ok := c.Lookup("shipped"); !ok || e.Bundle != "https://example.com/shipped.tar.zst" || e.SHA256 != strings.Repeat("ab", 32) {
		t.Errorf("shipped: %+v", e)
	}
	if _, ok := c.Lookup("debian-12"); !ok {
		t.Error("the built-in entry is gone")
	}
	for body, want := range map[string]string{
		"[images.x]\noci = \"a\"\ndebian = \"bookworm\"\n":                                   "give one of",
		"[images.x]\nimage = \"a\"\n":                                                        "unknown key",
		"[images.debian-12]\noci = \"alpine\"\n":                                             "built in",
		"[images.Bad_Name]\noci = \"alpine\"\n":                                              "DNS label",
		"[images.x]\noci = \"UPPER CASE!\"\n":                                                "not an image reference",
		"[images.x]\nbundle = \"https://x/b.tar.zst\"\n":                                     "needs sha256",
		"[images.x]\nbundle = \"ftp://x/b\"\nsha256 = \"" + strings.Repeat("a", 64) + "\"\n": "not an http(s) URL",
		"[images.x]\nbundle = \"https://x/b\"\noci = \"alpine\"\n":                           "give one of",
		"[images.x]\ndescription = \"nothing to pull\"\n":                                    "give oci",
		"[images.x]\ndebian = \"bookworm\"\npackages = [\"a b\"]\n":                          "",
		"not toml at all = = =":                                                              "catalog",
	} {
		write(body)
		_, err := LoadCatalog(path)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("catalog %q: %v, want an error with %q and the file's path", body, err, want)
		}
	}
}
