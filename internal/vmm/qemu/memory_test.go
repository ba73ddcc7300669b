package qemu

import (
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/vmm"
)

// A VM's memory decides its command line and what its saves record, and
// a restore spawns what was saved: the balloon's features are part of the
// device state, and a template's RAM is the file beside its state.
func TestMemoryVariants(t *testing.T) {
	spec := vmm.Spec{VM: model.VM{VCPUs: 1, MemoryMiB: 256}, Dir: "/s/vms/x", Kernel: "/k"}
	d := New("tcg")

	cold := strings.Join(d.Args(spec), " ")
	if !strings.Contains(cold, "free-page-reporting=on") || strings.Contains(cold, "memory-backend") {
		t.Errorf("a cold boot that leaves no template: %s", cold)
	}

	spec.LeavesTemplate = true
	tmpl := strings.Join(d.Args(spec), " ")
	for _, want := range []string{"memory-backend-memfd,id=microvm.ram,size=256M,share=on",
		"-machine memory-backend=microvm.ram", "free-page-reporting=off"} {
		if !strings.Contains(tmpl, want) {
			t.Errorf("a boot that leaves a template lacks %q: %s", want, tmpl)
		}
	}

	const qv = "7.2.22 Debian 1:7.2+dfsg-7"
	for _, c := range []struct {
		name       string
		m          memory
		memoryFile bool
		want       memory
	}{
		{"a cold vm's snapshot", memory{reporting: true}, false, memory{reporting: true}},
		{"a template", bootMemory(spec), true, memory{file: "/t/" + MemoryFile}},
		{"a snapshot of the vm that left a template", bootMemory(spec), false, memory{}},
		{"a snapshot of a vm started from a template", memory{file: "/t/" + MemoryFile}, false, memory{}},
	} {
		v := savedVersion(qv, c.m, c.memoryFile)
		got, m := restoreMemory(v, "/t/state")
		if got != qv || m != c.want {
			t.Errorf("%s: saved as %q, restored as %q %+v, want %+v", c.name, v, got, m, c.want)
		}
	}
	if _, m := restoreMemory(qv, "/t/state"); !m.reporting || m.file != "" {
		t.Errorf("a snapshot from before memory variants: %+v", m)
	}

	clone := strings.Join(d.args(spec, memory{file: "/t/" + MemoryFile}), " ")
	if !strings.Contains(clone, "mem-path=/t/"+MemoryFile+",share=off") || !strings.Contains(clone, "free-page-reporting=off") {
		t.Errorf("a vm started from a template must map its memory copy-on-write, without reporting: %s", clone)
	}

	h := vmm.Handles{Extra: map[string]string{}}
	memoryHandles(h.Extra, memory{file: "/t/" + MemoryFile})
	if m := handlesMemory(h); m.file != "" || m.reporting {
		t.Errorf("a vm started from a template saves all of its RAM: %+v", m)
	}
	memoryHandles(h.Extra, bootMemory(spec))
	if m := handlesMemory(h); m != bootMemory(spec) {
		t.Errorf("handles of a boot that leaves a template: %+v", m)
	}
}
