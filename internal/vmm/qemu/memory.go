package qemu

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/banger-dev/banger/internal/proc"
	"github.com/banger-dev/banger/internal/vmm"
)

// MemoryFile is a template's guest RAM, in its directory beside its
// state, which every VM started from the template maps copy-on-write.
const MemoryFile = "memory.ram"

// memfdPrefix is what QEMU's memfd RAM backend is linked as in
// /proc/PID/fd.
const memfdPrefix = "/memfd:memory-backend-memfd"

// memory is how one QEMU holds its guest's RAM.
type memory struct {
	// memfd: the RAM is a memfd QEMU maps shared (a VM that will leave
	// a template), which a template's save copies whole. It is memory,
	// not a file on the state disk: nothing writes the guest's RAM back
	// to disk, and it goes with the process.
	memfd bool
	// file: the RAM is this template's MemoryFile, mapped private (copy
	// on write); "" with memfd false is anonymous memory.
	file string
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
		return memory{memfd: true}
	}
	return memory{reporting: true}
}

// args are QEMU's arguments for memory m of size MiB. The backend is
// named as the default RAM backend is, so that the RAM block's name,
// which the migration stream carries, is the same either way: a snapshot
// of any of these restores into anonymous memory.
func (m memory) args(size int64) []string {
	var backend string
	switch {
	case m.memfd:
		backend = fmt.Sprintf("memory-backend-memfd,id=microvm.ram,size=%dM,share=on", size)
	case m.file != "":
		backend = fmt.Sprintf("memory-backend-file,id=microvm.ram,size=%dM,mem-path=%s,share=off", size, m.file)
	default:
		return nil
	}
	return []string{"-object", backend, "-machine", "memory-backend=microvm.ram"}
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
	if m.memfd {
		extra["memory"] = "memfd"
	}
	if !m.reporting {
		extra["reporting"] = "off"
	}
}

// handlesMemory is the memory memoryHandles recorded (a template's file
// is not: a VM started from one saves all of its RAM).
func handlesMemory(h vmm.Handles) memory {
	return memory{memfd: h.Extra["memory"] == "memfd", reporting: h.Extra["reporting"] != "off"}
}

// memfdPath is the /proc path of the memfd holding the RAM of the QEMU
// with handles h, open to whoever may read that process's descriptors.
func memfdPath(h vmm.Handles) (string, error) {
	fds := proc.FDs(h.PID, memfdPrefix)
	if len(fds) != 1 {
		return "", fmt.Errorf("finding the guest's memory: qemu (pid %d) holds %d memfd RAM backends, want one", h.PID, len(fds))
	}
	return fds[0], nil
}
