// Package arch checks banger's dependency rules: which internal packages
// each package may import, that model and api use only the standard
// library, and that only the exec package runs commands.
package arch

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/banger-dev/banger/"

// allowed lists, for every package, the internal packages its non-test
// files may import. A package missing from this table fails the test: a
// new package must say where it sits.
var allowed = map[string][]string{
	"internal/model":                   {},
	"internal/api":                     {},
	"internal/paths":                   {},
	"internal/proc":                    {},
	"internal/guest":                   {},
	"internal/rpc":                     {"internal/api"},
	"internal/client":                  {"internal/api", "internal/rpc"},
	"internal/guestssh":                {"internal/atomicfile", "internal/guest"},
	"internal/archive":                 {"internal/rootfs"},
	"internal/rootfs":                  {"internal/host/run"},
	"internal/oci":                     {"internal/rootfs"},
	"internal/clockskew":               {},
	"internal/host/portfwd":            {"internal/tunnel"},
	"internal/tunnel":                  {},
	"internal/cli":                     {"internal/api", "internal/archive", "internal/atomicfile", "internal/bundle", "internal/client", "internal/guestssh", "internal/paths", "internal/proc", "internal/workspace"},
	"internal/workspace":               {"internal/guest", "internal/host/run", "internal/model", "internal/wsstream"},
	"internal/wsstream":                {},
	"internal/store":                   {"internal/model"},
	"internal/op":                      {"internal/model"},
	"internal/config":                  {"internal/model"},
	"internal/initramfs":               {},
	"internal/bundle":                  {},
	"internal/image":                   {"internal/bundle", "internal/guest", "internal/host/disk", "internal/host/run", "internal/initramfs", "internal/model", "internal/op", "internal/paths", "internal/atomicfile", "internal/rootfs", "internal/oci"},
	"internal/vmm":                     {"internal/agentctl", "internal/model", "internal/proc"},
	"internal/vmm/fakevmm":             {"internal/vmm", "internal/model"},
	"internal/vmm/qemu":                {"internal/agentctl", "internal/guest", "internal/host/disk", "internal/host/run", "internal/model", "internal/proc", "internal/vmm"},
	"internal/vmm/firecracker/apispec": {},
	"internal/vmm/firecracker/fctest":  {"internal/host/run", "internal/vmm/firecracker/apispec"},
	"test/fakefirecracker":             {"internal/vmm/firecracker/apispec"},
	"test/fakejailer":                  {"internal/host/disk"},
	"internal/kernel":                  {"internal/atomicfile"},
	"internal/vmm/firecracker":         {"internal/agentctl", "internal/host/run", "internal/kernel", "internal/model", "internal/proc", "internal/vmm"},
	"internal/agentctl":                {"internal/guest"},
	"internal/host/run":                {},
	"internal/host/disk":               {"internal/host/run", "internal/atomicfile"},
	"internal/host/hostnet":            {"internal/model"},
	"internal/host/dns":                {},
	"internal/host/kvmprobe":           {"internal/host/run", "internal/initramfs", "internal/atomicfile"},
	"internal/doctor":                  {"internal/host/run", "internal/proc"},
	"internal/boot":                    {"internal/agentctl", "internal/guest", "internal/guestssh", "internal/host/disk", "internal/host/portfwd", "internal/model", "internal/paths", "internal/proc", "internal/tunnel", "internal/vmm", "internal/atomicfile"},
	"internal/vm":                      {"internal/host/disk", "internal/model", "internal/op", "internal/paths", "internal/vmm", "internal/image", "internal/atomicfile", "internal/proc"},
	"internal/daemon": {"internal/guest", "internal/api", "internal/boot", "internal/config", "internal/guestssh", "internal/host/dns",
		"internal/host/hostnet", "internal/host/run", "internal/image", "internal/model", "internal/op", "internal/paths",
		"internal/rpc", "internal/store", "internal/vm", "internal/vmm", "internal/vmm/qemu",
		"internal/vmm/firecracker", "internal/host/kvmprobe", "internal/doctor", "internal/proc", "internal/tunnel", "internal/oci", "internal/rootfs"},
	"internal/agent":      {"internal/archive", "internal/guest", "internal/proc", "internal/tunnel"},
	"cmd/banger":          {"internal/cli"},
	"cmd/bangerd":         {"internal/daemon", "internal/paths"},
	"cmd/banger-agent":    {"internal/agent", "internal/wsstream"},
	"test/arch":           {},
	"test/integration":    {},
	"test/e2e":            {"internal/clockskew", "internal/testimage"},
	"internal/testimage":  {},
	"internal/atomicfile": {},
}

// stdlibOnly packages may import nothing outside the standard library.
var stdlibOnly = map[string]bool{"internal/model": true, "internal/api": true, "internal/guest": true, "internal/proc": true}

// execAllowed are the only packages that may import os/exec (tests aside).
var execAllowed = map[string]bool{"internal/host/run": true}

func TestDependencyRules(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	imports := map[string]map[string]bool{} // package dir → imports
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n != "." && (strings.HasPrefix(n, ".") || n == "testdata" || n == "bench") && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		if imports[rel] == nil {
			imports[rel] = map[string]bool{}
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			imports[rel][p] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var pkgs []string
	for p := range imports {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, pkg := range pkgs {
		allow, known := allowed[pkg]
		if !known {
			t.Errorf("package %s is not in the dependency table; add it (and to ARCHITECTURE.md)", pkg)
			continue
		}
		ok := map[string]bool{}
		for _, a := range allow {
			ok[a] = true
		}
		for imp := range imports[pkg] {
			if internal, isOurs := strings.CutPrefix(imp, module); isOurs {
				if !ok[internal] {
					t.Errorf("%s imports %s, which the dependency rules forbid", pkg, internal)
				}
				continue
			}
			if stdlibOnly[pkg] && !isStdlib(imp) {
				t.Errorf("%s must use only the standard library but imports %s", pkg, imp)
			}
			if imp == "os/exec" && !execAllowed[pkg] && !strings.HasPrefix(pkg, "test/") {
				t.Errorf("%s imports os/exec; commands run only through the exec package", pkg)
			}
		}
	}
}

// isStdlib reports whether an import path is in the standard library: its
// first element has no dot.
func isStdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func TestTableHasNoStalePackages(t *testing.T) {
	for pkg := range allowed {
		if _, err := os.Stat(filepath.Join("../..", pkg)); err != nil {
			t.Errorf("dependency table names %s, which does not exist", pkg)
		}
	}
}
