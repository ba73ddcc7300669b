package qemu

import (
	"path/filepath"
	"strings"

	"github.com/banger-dev/banger/internal/vmm"
)

// MemoryFile is the guest RAM file: in the VM's directory while a VM that
// will leave a template runs, and in a template's directory beside its
// state, where every VM started from the template maps it copy-on-write.
const MemoryFile = "memory.ram"

// memory is how one QEMU holds its guest's RAM.
type memory struct {
	// file holds the RAM, mapped shared (the VM's own, which a template
	// copies whole) or private (a template's, copy-on-write); "" is
	// anonymous memory.
	file  string
	share bool
	// reporting is the balloon's free page reporting: the guest hands
	// freed pages back. QEMU 7.2 gives a file-backed RAM block's pages
	// back by punching holes in its file, private mapping or not, which
	// in a template's file would zero those pages under every VM started
	// from it; so a template's VM and all that come from it run without.
	// The device's features are part of its migrated state: a restore
	// must spawn what was saved.
	reporting bool
}

// bootMemory is the memory of a cold boot of spec.
func bootMemory(spec vmm.Spec) memory {
	if spec.LeavesTemplate {
		return memory{file: filepath.Join(spec.Dir, MemoryFile), share: true}
	}
	return memory{reporting: true}
}

// Tags a saved state's version carries after QEMU's own, each after "; ":
// what the restoring QEMU must spawn differently from a cold boot.
const (
	tagNoReporting = "no-free-page-reporting"
	tagMemoryFile  = "memory-file" // RAM in MemoryFile beside the state
)

// savedVersion is the version a save of a VM with memory m records.
func savedVersion(qemu string, m memory, memoryFile bool) string {
	v := qemu
	if !m.reporting {
		v += "; " + tagNoReporting
	}
	if memoryFile {
		v += "; " + tagMemoryFile
	}
	return v
}

// restoreMemory parses what savedVersion recorded for the state at path:
// QEMU's version and the memory to spawn.
func restoreMemory(version, path string) (qemu string, m memory) {
	parts := strings.Split(version, "; ")
	m.reporting = true
	for _, p := range parts[1:] {
		switch p {
		case tagNoReporting:
			m.reporting = false
		case tagMemoryFile:
			m.file = filepath.Join(filepath.Dir(path), MemoryFile)
		}
	}
	return parts[0], m
}

// memoryHandles records m in a VM's handles: a later save must know.
func memoryHandles(extra map[string]string, m memory) {
	if m.file != "" && m.share {
		extra["memory"] = m.file // the VM's own: Cleanup removes it
	}
	if !m.reporting {
		extra["reporting"] = "off"
	}
}

// handlesMemory is the memory memoryHandles recorded.
func handlesMemory(h vmm.Handles) memory {
	return memory{file: h.Extra["memory"], share: h.Extra["memory"] != "", reporting: h.Extra["reporting"] != "off"}
}
