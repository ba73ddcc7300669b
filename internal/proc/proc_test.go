package proc

import (
	"context"
	"os"
	"os/exec"
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
