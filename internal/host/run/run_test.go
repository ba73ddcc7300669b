package run

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestErrorsCarryArgvAndOutput(t *testing.T) {
	_, err := Output(context.Background(), []string{"sh", "-c", "echo out; echo oops >&2; exit 3"})
	var re *Error
	if !errors.As(err, &re) {
		t.Fatalf("want *Error, got %v", err)
	}
	if re.ExitCode() != 3 || !strings.Contains(err.Error(), "sh -c") || !strings.Contains(err.Error(), "oops") {
		t.Fatalf("error %q (exit %d) lacks argv, stderr or code", err, re.ExitCode())
	}
	out, err := Output(context.Background(), []string{"echo", "a;b $(x)"})
	if err != nil || string(out) != "a;b $(x)\n" {
		t.Fatalf("argv was interpreted: %q %v", out, err)
	}
	if _, err := Output(context.Background(), []string{"/nonexistent/prog"}); err == nil || !strings.Contains(err.Error(), "/nonexistent/prog") {
		t.Fatalf("missing program: %v", err)
	}
}
