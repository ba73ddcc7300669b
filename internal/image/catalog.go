// Package image knows banger's images: the catalog of short names that can
// be fetched or built on demand (built in, and a user's catalog file), the
// sources images come from (a Debian recipe, an OCI registry, an archive)
// and the service that makes them local.
package image

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/banger-dev/banger/internal/model"
)

// Entry is one catalog name and where it comes from: a Debian suite built
// from packages, or an OCI reference.
type Entry struct {
	Name string
	// Source describes the entry for humans.
	Source string
	// Suite is the Debian suite a Debian entry is built from, with
	// Packages on top of the configured ones.
	Suite    string
	Packages []string
	// OCI is the reference an OCI entry pulls.
	OCI string
	// Bundle is the URL a bundle entry loads, SHA256 the whole file's
	// (checked by the CLI, which downloads it as the user).
	Bundle, SHA256 string
	// User says the entry comes from the user's catalog file.
	User bool
}

// Catalog maps short image names to sources.
type Catalog struct {
	entries map[string]Entry
}

// Builtin is the catalog banger ships with.
func Builtin() *Catalog {
	return &Catalog{entries: map[string]Entry{
		"debian-12": {Name: "debian-12", Suite: "bookworm", Source: "built from Debian bookworm packages (mmdebstrap, linux-image-cloud-amd64)"},
	}}
}

// catalogFile is the user's catalog file:
//
//	[images.alpine]
//	oci = "docker.io/library/alpine:3.20"
//	description = "Alpine Linux 3.20"
//
//	[images.bookworm-build]
//	debian = "bookworm"
//	packages = ["build-essential"]
type catalogFile struct {
	Images map[string]struct {
		OCI         string   `toml:"oci"`
		Debian      string   `toml:"debian"`
		Packages    []string `toml:"packages"`
		Bundle      string   `toml:"bundle"`
		SHA256      string   `toml:"sha256"`
		Description string   `toml:"description"`
	} `toml:"images"`
}

// LoadCatalog is the built-in catalog plus the entries of the user's
// catalog file at path (none when it does not exist). An error says what
// is wrong with the file and where.
func LoadCatalog(path string) (*Catalog, error) {
	c := Builtin()
	var f catalogFile
	md, err := toml.DecodeFile(path, &f)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", path, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		return nil, fmt.Errorf("catalog %s: unknown key %q (entries take oci, debian, packages, bundle, sha256, description)", path, un[0].String())
	}
	for n, e := range f.Images {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("catalog %s: image %q: %s", path, n, fmt.Sprintf(format, args...))
		}
		if err := model.ValidateName(n); err != nil {
			return nil, bad("the name must be a DNS label such as alpine or py-312")
		}
		if _, builtin := c.entries[n]; builtin {
			return nil, bad("is built in; choose another name")
		}
		entry := Entry{Name: n, Source: e.Description, User: true}
		switch {
		case (e.OCI != "") && (e.Debian != "") || (e.Bundle != "") && (e.OCI != "" || e.Debian != ""):
			return nil, bad("give one of oci, debian and bundle")
		case e.Bundle != "":
			u, err := url.Parse(e.Bundle)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return nil, bad("bundle %q is not an http(s) URL", e.Bundle)
			}
			if b, err := hex.DecodeString(e.SHA256); err != nil || len(b) != 32 {
				return nil, bad("a bundle entry needs sha256 = \"<64 hex digits>\" of the bundle file (sha256sum prints it)")
			}
			if len(e.Packages) > 0 {
				return nil, bad("packages are for debian entries")
			}
			entry.Bundle, entry.SHA256 = e.Bundle, strings.ToLower(e.SHA256)
			if entry.Source == "" {
				entry.Source = "bundle " + e.Bundle
			}
		case e.OCI != "":
			if _, err := name.ParseReference(e.OCI, name.WeakValidation); err != nil {
				return nil, bad("oci %q is not an image reference: %v", e.OCI, err)
			}
			if len(e.Packages) > 0 {
				return nil, bad("packages are for debian entries")
			}
			entry.OCI = e.OCI
			if entry.Source == "" {
				entry.Source = "oci " + e.OCI
			}
		case e.Debian != "":
			if err := (DebianOptions{Suite: e.Debian, Packages: e.Packages}).withDefaults().validate(); err != nil {
				return nil, bad("%v", err)
			}
			entry.Suite, entry.Packages = e.Debian, e.Packages
			if entry.Source == "" {
				entry.Source = "built from Debian " + e.Debian + " packages" + packagesNote(e.Packages)
			}
		default:
			return nil, bad("give oci = \"REFERENCE\", debian = \"SUITE\" or bundle = \"URL\" with its sha256")
		}
		c.entries[n] = entry
	}
	return c, nil
}

func packagesNote(p []string) string {
	if len(p) == 0 {
		return ""
	}
	return " plus " + strings.Join(p, ", ")
}

// Lookup finds a catalog entry by name.
func (c *Catalog) Lookup(name string) (Entry, bool) {
	e, ok := c.entries[name]
	return e, ok
}

// Names lists the catalog's names, sorted.
func (c *Catalog) Names() []string {
	out := make([]string, 0, len(c.entries))
	for n := range c.entries {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// CatalogPath is the user's catalog file beside the config file.
func CatalogPath(configPath string) string {
	return filepath.Join(filepath.Dir(configPath), "catalog.toml")
}
