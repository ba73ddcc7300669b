// Package image knows banger's images: the catalog of short names that can
// be fetched or built on demand, and (with the next issues) pulling,
// building and registering them.
package image

import "sort"

// Entry is one catalog name and where it comes from.
type Entry struct {
	Name   string
	Source string
	// Suite is the Debian suite a built-in Debian image is built from.
	Suite string
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
