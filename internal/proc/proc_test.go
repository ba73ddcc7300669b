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
