package fctest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadRecord(t *testing.T) {
	dir := t.TempDir()
	if reqs, err := ReadRecord(filepath.Join(dir, "none")); err != nil || reqs != nil {
		t.Fatalf("missing record: %v, %v", reqs, err)
	}
	p := filepath.Join(dir, "rec")
	data := `{"method":"PUT","path":"/machine-config","body":{"vcpu_count":2,"mem_size_mib":256},"status":204}
{"method":"GET","path":"/","body":null,"status":200}

{"method":"PUT","path":"/actions","body":"{\"action_type\":","status":400}
`
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	reqs, err := ReadRecord(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 3 || reqs[0].Method != "PUT" || reqs[0].Path != "/machine-config" || reqs[0].Status != 204 ||
		string(reqs[0].Body) != `{"vcpu_count":2,"mem_size_mib":256}` || string(reqs[1].Body) != "null" || reqs[2].Status != 400 {
		t.Fatalf("ReadRecord = %+v", reqs)
	}
	if err := os.WriteFile(p, []byte(data+"{not json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRecord(p); err == nil || !strings.Contains(err.Error(), "line 5") {
		t.Fatalf("malformed record: %v", err)
	}
}

func TestBuild(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin, err := Build(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if bin != filepath.Join(dir, "firecracker") {
		t.Fatalf("Build returned %s", bin)
	}
	// Without its required arguments it exits 1, as Firecracker does on
	// bad arguments.
	err = exec.Command(bin).Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("running the fake without arguments: %v", err)
	}
}
