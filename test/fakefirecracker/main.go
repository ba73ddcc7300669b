// Command fakefirecracker stands in for Firecracker in banger's tests, on
// machines where Firecracker cannot run. It is invoked like
//
//	firecracker --api-sock PATH --id ID
//
// and serves Firecracker's API over the Unix socket PATH. Every request is
// validated against Firecracker's own API description (the Swagger file in
// shared/specs, through internal/vmm/firecracker/apispec), and the fake
// enforces what Firecracker enforces beyond it: which requests are allowed
// before and after InstanceStart, that a boot source exists before a boot,
// that path and body IDs agree, that the files it is pointed at exist, and
// that bodies carry no fields the API does not declare.
//
// Like Firecracker, its standard output is the guest's serial console:
// InstanceStart prints a few boot-like lines there. PUT /logger's log_path
// and PUT /metrics' metrics_path receive log lines and one metrics JSON
// object per line (every second, and on FlushMetrics). PUT /vsock binds
// the vsock's Unix socket as Firecracker does. SendCtrlAltDel makes the
// process exit 0 shortly after answering, as a guest that reboots would;
// SIGTERM and SIGKILL kill it (Firecracker does not handle them).
//
// Knobs, from the environment:
//
//	FAKE_FC_SPEC                path of the API description (default: the
//	                            path built in with -ldflags -X main.specPath,
//	                            else apispec.SpecPath() from the working
//	                            directory)
//	FAKE_FC_RECORD              file to append every request to, one JSON
//	                            object a line: {method, path, body, status}
//	                            ("fd:N": the inherited descriptor N, for a
//	                            fake inside a jail);
//	                            body is the raw JSON (a JSON string if it was
//	                            not JSON, null if empty); status 0 means the
//	                            fake died without answering (FAKE_FC_DIE_ON)
//	FAKE_FC_IGNORE_CTRLALTDEL=1 answer SendCtrlAltDel (204) but keep running
//	FAKE_FC_DIE_ON=X            exit 1 without answering when a request
//	                            arrives whose action_type is X ("InstanceStart")
//	                            or whose path is X ("/boot-source", also
//	                            "boot-source" or a template "/drives/{drive_id}")
//	FAKE_FC_FAIL_ON=X:MESSAGE   answer a (valid) request matching X as above
//	                            with 400 {"fault_message": MESSAGE}
package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/vmm/firecracker/apispec"
)

// specPath is set at build time by fctest.Build so that the fake finds the
// API description whatever its working directory.
var specPath string

const version = "1.17.0-dev"

type args struct {
	apiSock, id string
}

// idPattern is what Firecracker accepts as an instance ID.
var idPattern = regexp.MustCompile(`^[a-zA-Z0-9-]{1,64}$`)

// parseArgs accepts exactly the arguments banger's driver passes, and the
// jailer's (it adds its start times), in Firecracker's syntax ("--name
// value"; Firecracker has no "--name=value").
func parseArgs(argv []string) (args, error) {
	var a args
	var ignored string
	seen := map[string]bool{}
	for i := 0; i < len(argv); i++ {
		name := argv[i]
		var dst *string
		switch name {
		case "--api-sock":
			dst = &a.apiSock
		case "--id":
			dst = &a.id
		case "--start-time-us", "--start-time-cpu-us", "--parent-cpu-time-us":
			dst = &ignored
		default:
			return a, fmt.Errorf("found argument '%s' which wasn't expected, or isn't valid in this context", name)
		}
		if seen[name] {
			return a, fmt.Errorf("the argument '%s' was provided more than once", name)
		}
		seen[name] = true
		if i+1 >= len(argv) || strings.HasPrefix(argv[i+1], "--") {
			return a, fmt.Errorf("the argument '%s' requires a value, but none was supplied", name)
		}
		i++
		*dst = argv[i]
	}
	for _, n := range []string{"--api-sock", "--id"} {
		if !seen[n] {
			return a, fmt.Errorf("the argument '%s' is required (banger's driver always passes it)", n)
		}
	}
	if !idPattern.MatchString(a.id) {
		return a, fmt.Errorf("invalid instance ID %q: it must be 1 to 64 alphanumeric characters or hyphens", a.id)
	}
	return a, nil
}

// knobs are the environment's settings.
type knobs struct {
	specPath    string
	record      string
	recordFile  *os.File // FAKE_FC_RECORD=fd:N
	ignoreCAD   bool
	dieOn       string
	failOn      string
	failMessage string
}

func knobsFromEnv() (knobs, error) {
	k := knobs{
		specPath:  os.Getenv("FAKE_FC_SPEC"),
		record:    os.Getenv("FAKE_FC_RECORD"),
		ignoreCAD: os.Getenv("FAKE_FC_IGNORE_CTRLALTDEL") == "1",
		dieOn:     os.Getenv("FAKE_FC_DIE_ON"),
	}
	if n, ok := strings.CutPrefix(k.record, "fd:"); ok {
		fd, err := strconv.Atoi(n)
		if err != nil {
			return k, fmt.Errorf("FAKE_FC_RECORD=%q: want a path or fd:<number>", k.record)
		}
		k.recordFile = os.NewFile(uintptr(fd), "record")
	}
	if f := os.Getenv("FAKE_FC_FAIL_ON"); f != "" {
		target, msg, ok := strings.Cut(f, ":")
		if !ok || target == "" {
			return k, fmt.Errorf("FAKE_FC_FAIL_ON=%q: want <action or path>:<fault message>", f)
		}
		k.failOn, k.failMessage = target, msg
	}
	if k.specPath == "" {
		k.specPath = specPath
	}
	if k.specPath == "" {
		p, err := apispec.SpecPath()
		if err != nil {
			return k, fmt.Errorf("FAKE_FC_SPEC is unset and %w", err)
		}
		k.specPath = p
	}
	return k, nil
}

func main() {
	a, err := parseArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "Arguments parsing error: %v\n\nFor more information try --help.\n", err)
		os.Exit(1)
	}
	k, err := knobsFromEnv()
	if err != nil {
		fmt.Fprintf(os.Stderr, "fake firecracker: %v\n", err)
		os.Exit(1)
	}
	spec, err := apispec.Load(k.specPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fake firecracker: %v\n", err)
		os.Exit(1)
	}
	// Like the driver expects of Firecracker: a stale socket is replaced.
	if err := os.Remove(a.apiSock); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "Failed to open the API socket at %s: %v\n", a.apiSock, err)
		os.Exit(1)
	}
	ln, err := net.Listen("unix", a.apiSock)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Failed to open the API socket at %s: %v\n", a.apiSock, err)
		os.Exit(1)
	}
	m := newMachine(a, k, spec, os.Stdout, os.Stderr)
	srv := &http.Server{Handler: m, ReadHeaderTimeout: 10 * time.Second}
	err = srv.Serve(ln)
	fmt.Fprintf(os.Stderr, "fake firecracker: API server stopped: %v\n", err)
	m.exit(1)
}
