package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// slowPort is where the test's throttling proxy in front of the registry
// listens, on the namespace's loopback.
const slowPort = 5002

// slowProxyMain serves spec ("LISTEN UPSTREAM BYTES-PER-SECOND"): a
// reverse proxy to the registry that sends blobs at that rate, so a pull
// is slow enough to watch and to interrupt.
func slowProxyMain(spec string) int {
	f := strings.Fields(spec)
	if len(f) != 3 {
		fmt.Fprintln(os.Stderr, "want LISTEN UPSTREAM RATE")
		return 2
	}
	up, err := url.Parse(f[1])
	rate, rerr := strconv.Atoi(f[2])
	if err != nil || rerr != nil || rate <= 0 {
		fmt.Fprintln(os.Stderr, "bad upstream or rate")
		return 2
	}
	proxy := httputil.NewSingleHostReverseProxy(up)
	proxy.ModifyResponse = func(r *http.Response) error {
		if strings.Contains(r.Request.URL.Path, "/blobs/") && r.Request.Method == http.MethodGet {
			r.Body = &throttled{r: r.Body, rate: rate}
		}
		return nil
	}
	proxy.FlushInterval = -1
	if err := http.ListenAndServe(f[0], proxy); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// throttled reads at rate bytes a second: each read returns once the
// bytes so far are due.
type throttled struct {
	r     io.ReadCloser
	rate  int
	start time.Time
	sent  int64
}

func (t *throttled) Read(p []byte) (int, error) {
	if t.start.IsZero() {
		t.start = time.Now()
	}
	n, err := t.r.Read(p)
	t.sent += int64(n)
	time.Sleep(time.Until(t.start.Add(time.Duration(float64(t.sent) / float64(t.rate) * float64(time.Second)))))
	return n, err
}

func (t *throttled) Close() error { return t.r.Close() }

// A pull on a terminal shows each layer's bytes and the total; Ctrl-C
// cancels it, and what it downloaded is left only as cache a prune
// removes: no partial blob, no work directory, no image.
func TestOCIPullProgressAndCancel(t *testing.T) {
	w := newWorld(t)
	reg := w.startRegistry()
	w.pushImages(reg, "as=big=big")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	w.serve("slowproxy", slowPort, "env", fmt.Sprintf("BANGER_E2E_SLOWPROXY=127.0.0.1:%d http://%s %d", slowPort, reg, 2<<20), exe)
	ref := fmt.Sprintf("127.0.0.1:%d/bb:big", slowPort)

	out, code := w.runTTY("", "image", "pull", ref)
	if code != 0 {
		t.Fatalf("image pull on a terminal: exit %d\n%s", code, out)
	}
	for _, want := range []string{"(layer 3/3", "in all)", "MiB done"} {
		if !strings.Contains(out, want) {
			t.Errorf("the pull's progress lacks %q:\n%q", want, out)
		}
	}
	w.ok("image", "delete", ref)
	w.ok("image", "prune")
	blobs := filepath.Join(w.stateDir, "oci", "blobs", "sha256")
	if left, _ := os.ReadDir(blobs); len(left) != 0 {
		t.Fatalf("blobs left after delete and prune: %d", len(left))
	}

	// Interrupted mid-download, as Ctrl-C does.
	cmd := exec.Command("ip", "netns", "exec", w.ns, filepath.Join(binDir, "banger"), "--socket", w.socket, "image", "pull", ref)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type opRec struct {
		ID     string `json:"id"`
		Kind   string `json:"kind"`
		State  string `json:"state"`
		Done   int64  `json:"done"`
		Target string `json:"target"`
		Items  []struct {
			Name  string `json:"name"`
			Done  int64  `json:"done"`
			Total int64  `json:"total"`
		} `json:"items"`
	}
	var pull opRec
	deadline := time.Now().Add(60 * time.Second)
	for pull.ID == "" || pull.Done == 0 {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("no pull in progress to interrupt: %+v", pull)
		}
		time.Sleep(100 * time.Millisecond)
		var ops []opRec
		if err := json.Unmarshal([]byte(w.ok("op", "list", "--json")), &ops); err != nil {
			t.Fatal(err)
		}
		for _, o := range ops {
			if o.Kind == "image.pull" && o.State == "running" && o.Target == ref {
				pull = o
			}
		}
	}
	if len(pull.Items) != 3 || pull.Items[0].Total == 0 {
		t.Errorf("op list --json of a pull in progress: items %+v", pull.Items)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("image pull did not end within 30 s of SIGINT")
	}
	if err == nil || !strings.Contains(stderr.String(), "cancelled") {
		t.Errorf("interrupted pull: %v\n%s", err, stderr.String())
	}
	var final opRec
	if err := json.Unmarshal([]byte(w.ok("op", "status", "--json", pull.ID)), &final); err != nil || final.State != "cancelled" {
		t.Errorf("the pull's operation after SIGINT: %+v %v", final, err)
	}
	if r := w.banger("image", "show", ref); r.code == 0 {
		t.Error("a cancelled pull left an image")
	}
	if partial, _ := filepath.Glob(filepath.Join(blobs, ".partial-*")); len(partial) != 0 {
		t.Errorf("a cancelled pull left partial blobs: %v", partial)
	}
	if work, _ := filepath.Glob(filepath.Join(w.stateDir, "images", ".*")); len(work) != 0 {
		t.Errorf("a cancelled pull left work directories: %v", work)
	}
	// Layers it finished are cache no image holds: a prune takes them.
	w.ok("image", "prune")
	if left, _ := os.ReadDir(blobs); len(left) != 0 {
		t.Errorf("blobs a prune left after the cancelled pull: %d", len(left))
	}
}
