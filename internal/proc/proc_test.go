package proc

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestProcessHelpers(t *testing.T) {
	if Exited(os.Getpid()) {
		t.Fatal("this process counts as exited")
	}
	if args := Cmdline(os.Getpid()); len(args) == 0 {
		t.Fatal("no cmdline for this process")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	if WaitExit(ctx, pid) {
		t.Fatal("a sleeping child counts as exited")
	}
	cancel()
	_ = cmd.Process.Kill()
	// Not reaped yet: a zombie has exited all the same.
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !WaitExit(ctx, pid) {
		t.Fatal("a killed child never counted as exited")
	}
	_ = cmd.Wait()
	if Cmdline(pid) != nil {
		t.Fatal("an exited process still has a cmdline")
	}
}

// A descriptor is found by what it refers to, and its /proc path opens it
// even once it has no name on disk.
func TestFDs(t *testing.T) {
	path := t.TempDir() + "/held"
	if err := os.WriteFile(path, []byte("held open"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	got := FDs(os.Getpid(), path+" (deleted)")
	if len(got) != 1 {
		t.Fatalf("FDs found %v, want this process's one descriptor of %s", got, path)
	}
	if b, err := os.ReadFile(got[0]); err != nil || string(b) != "held open" {
		t.Fatalf("reading %s: %q, %v", got[0], b, err)
	}
	if got := FDs(os.Getpid(), "/nonexistent/"); len(got) != 0 {
		t.Fatalf("FDs of nothing held: %v", got)
	}
}

// Pages of a mapped file count in the RSS and not as the process's own
// memory; written anonymous memory counts in both.
func TestStatOwnMemory(t *testing.T) {
	const size = 32 << 20
	path := t.TempDir() + "/mapped"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{1}, 1<<20) // small: the GC must not give back much during the test
	for i := 0; i < size>>20; i++ {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	before, err := Stat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Munmap(m) }()
	var sum byte
	for i := 0; i < size; i += 4096 {
		sum += m[i]
	}
	// Mapped, not made: the Go heap may hand out pages already resident.
	anon, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Munmap(anon) }()
	for i := 0; i < size; i += 4096 {
		anon[i] = sum + 1
	}
	after, err := Stat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	rss, own := after.RSSBytes-before.RSSBytes, after.OwnBytes-before.OwnBytes
	if own < size*3/4 || rss < own+size*3/4 || after.OwnBytes > after.RSSBytes {
		t.Errorf("after reading a %d MiB file mapping and writing %d MiB of anonymous memory: RSS grew by %d MiB, own memory by %d MiB (of %d MiB RSS, %d own)",
			size>>20, size>>20, rss>>20, own>>20, after.RSSBytes>>20, after.OwnBytes>>20)
	}
}
