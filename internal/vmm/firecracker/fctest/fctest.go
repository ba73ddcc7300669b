// Package fctest helps tests of banger's Firecracker driver: it builds the
// fake firecracker (test/fakefirecracker), which validates every API
// request against Firecracker's own API description, and reads back the
// requests the fake recorded. It is test support, imported only by tests.
package fctest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/banger-dev/banger/internal/host/run"
	"github.com/banger-dev/banger/internal/vmm/firecracker/apispec"
)

// The fake's knobs: environment variables it reads at start-up (it
// inherits them from whatever spawns it).
const (
	// EnvSpec overrides the API description's path.
	EnvSpec = "FAKE_FC_SPEC"
	// EnvRecord names a file every request is appended to (see ReadRecord).
	EnvRecord = "FAKE_FC_RECORD"
	// EnvIgnoreCtrlAltDel=1 makes the fake accept SendCtrlAltDel and keep
	// running, as a guest that ignores it would.
	EnvIgnoreCtrlAltDel = "FAKE_FC_IGNORE_CTRLALTDEL"
	// EnvDieOn=<action or path> makes the fake exit 1, unanswered, when
	// that request arrives ("InstanceStart", "/boot-source").
	EnvDieOn = "FAKE_FC_DIE_ON"
	// EnvFailOn=<action or path>:<message> answers that request with 400
	// {"fault_message": message}.
	EnvFailOn = "FAKE_FC_FAIL_ON"
)

// Build compiles test/fakefirecracker into dir and returns the binary's
// path. The binary is named "firecracker" so that a driver looking the
// program up on PATH (or in dir) finds it. The API description's location
// is built into it, so the fake finds it whatever its working directory;
// Build fails if the description is not beside the module. It is static,
// so that it also runs inside a jail.
func Build(ctx context.Context, dir string) (string, error) {
	return build(ctx, dir, "firecracker", "./test/fakefirecracker")
}

// BuildTemp builds the fake into a new temporary directory and returns the
// binary's path and a function that removes the directory, for a test
// binary to call when its tests are done; the directory is gone already if
// the build fails.
func BuildTemp(ctx context.Context) (bin string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "fakefc-")
	if err != nil {
		return "", nil, fmt.Errorf("building the fake firecracker: %w", err)
	}
	remove = func() { _ = os.RemoveAll(dir) }
	if bin, err = Build(ctx, dir); err != nil {
		remove()
		return "", nil, err
	}
	return bin, remove, nil
}

// BuildJailer compiles test/fakejailer (the jailer's steps, for the fake
// firecracker) into dir as "jailer" and returns its path.
func BuildJailer(ctx context.Context, dir string) (string, error) {
	return build(ctx, dir, "jailer", "./test/fakejailer")
}

func build(ctx context.Context, dir, name, pkg string) (string, error) {
	root, err := apispec.ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("building the fake %s: %w", name, err)
	}
	spec, err := apispec.SpecPath()
	if err != nil {
		return "", fmt.Errorf("building the fake %s: %w", name, err)
	}
	goBin, err := goTool()
	if err != nil {
		return "", err
	}
	out, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", fmt.Errorf("building the fake %s: %w", name, err)
	}
	argv := []string{goBin, "build", "-o", out,
		"-ldflags=-X \"main.specPath=" + spec + "\"", pkg}
	if _, err := run.Output(ctx, argv, run.Dir(root), run.Env("CGO_ENABLED=0")); err != nil {
		return "", fmt.Errorf("building the fake %s: %w", name, err)
	}
	return out, nil
}

// goTool finds the go command: on PATH, else under $GOROOT.
func goTool() (string, error) {
	if p, err := run.LookPath("go"); err == nil {
		return p, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("building the fake firecracker: the go command is neither on PATH nor in $GOROOT/bin")
}

// Request is one request the fake received, as recorded in the file
// FAKE_FC_RECORD names. Body is the raw JSON body (null if there was none,
// a JSON string if it was not JSON). Status is the status the fake
// answered, or 0 if it died on the request (FAKE_FC_DIE_ON).
type Request struct {
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Body   json.RawMessage `json:"body"`
	Status int             `json:"status"`
}

// ReadRecord reads a record file into a slice, in the order the requests
// arrived. A file that does not exist holds no requests.
func ReadRecord(path string) ([]Request, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the fake firecracker's record: %w", err)
	}
	var out []Request
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r Request
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, n, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return out, nil
}
