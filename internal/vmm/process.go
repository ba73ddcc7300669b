package vmm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/banger-dev/banger/internal/agentctl"
	"github.com/banger-dev/banger/internal/proc"
)

// FileTail returns the last max bytes of a log file, trimmed, for error
// messages ("no output" when there is none).
func FileTail(path string, max int) string {
	b, err := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if err != nil || s == "" {
		return "no output"
	}
	if len(s) > max {
		s = "…" + s[len(s)-max:]
	}
	return s
}

// GracefulStop is how every driver stops a VM: ask the guest's agent for a
// clean poweroff (fallback, the VMM's own way, when the agent does not
// answer), wait up to timeout for the VMM process to exit, then SIGKILL it.
// A timeout of 0 kills at once.
func GracefulStop(ctx context.Context, what string, h Handles, timeout time.Duration, fallback func(context.Context)) error {
	if timeout > 0 {
		graceCtx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		err := errors.New("no control channel")
		if h.ControlSocket != "" {
			ackCtx, ackCancel := context.WithTimeout(graceCtx, 3*time.Second)
			err = agentctl.Shutdown(ackCtx, agentctl.DialerFor(h.ControlSocket, h.ControlProto))
			ackCancel()
		}
		if err != nil {
			fallback(graceCtx)
		}
		if proc.WaitExit(graceCtx, h.PID) {
			return nil
		}
	}
	if err := syscall.Kill(h.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing %s %d: %w", what, h.PID, err)
	}
	killCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if !proc.WaitExit(killCtx, h.PID) {
		return fmt.Errorf("%s %d survived SIGKILL", what, h.PID)
	}
	return nil
}
