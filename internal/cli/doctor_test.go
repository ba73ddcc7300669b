package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/rpc"
)

// fakeDaemon serves daemon.status and doctor with checks on a socket.
func fakeDaemon(t *testing.T, checks []api.DoctorCheck) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	any := func(h rpc.Handler) rpc.Method { return rpc.Method{Access: rpc.AccessAny, Handler: h} }
	srv := rpc.NewServer(map[string]rpc.Method{
		api.MethodDaemonStatus: any(rpc.Typed(func(context.Context, rpc.Caller, api.Empty) (api.DaemonStatus, error) {
			return api.DaemonStatus{Version: "test"}, nil
		})),
		api.MethodDoctor: any(rpc.Typed(func(context.Context, rpc.Caller, api.Empty) ([]api.DoctorCheck, error) {
			return checks, nil
		})),
	}, func(rpc.Caller, rpc.Access) error { return nil }, func(err error) *rpc.Error { return &rpc.Error{Code: api.CodeInternal, Message: err.Error()} }, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return sock
}

func runDoctor(t *testing.T, sock string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), append([]string{"--socket", sock, "doctor"}, args...), Streams{Out: &out, Err: &errb}, "test")
	return code, out.String(), errb.String()
}

func TestDoctorCommand(t *testing.T) {
	healthy := []api.DoctorCheck{
		{Name: "KVM", Status: "WARN", Detail: "KVM present but cannot run standard guests (paravirtual kvm_pvm); using QEMU with TCG", Fix: "nothing to do here"},
		{Name: "qemu-system-x86_64", Status: "OK", Detail: "QEMU emulator version 7.2.22"},
	}
	code, out, errOut := runDoctor(t, fakeDaemon(t, healthy))
	if code != ExitOK || errOut != "" {
		t.Fatalf("warnings only: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"NAME", "STATUS", "DETAIL", "KVM present but cannot run", "FIX\n  KVM (WARN): nothing to do here"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "qemu-system-x86_64 (OK)") {
		t.Errorf("an OK check got a fix line:\n%s", out)
	}

	failing := append(healthy, api.DoctorCheck{Name: "mkfs.ext4 (e2fsprogs)", Status: "FAIL", Detail: "not installed", Fix: "apt-get install e2fsprogs"})
	sock := fakeDaemon(t, failing)
	code, out, errOut = runDoctor(t, sock)
	if code != ExitError || !strings.Contains(out, "mkfs.ext4 (e2fsprogs) (FAIL): apt-get install e2fsprogs") || !strings.Contains(errOut, "1 check(s) failed") {
		t.Fatalf("a FAIL: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	code, out, _ = runDoctor(t, sock, "--json")
	var got []api.DoctorCheck
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != ExitError || len(got) != 3 || got[2].Fix != "apt-get install e2fsprogs" {
		t.Fatalf("--json: exit %d, %v, %+v", code, err, got)
	}
}
