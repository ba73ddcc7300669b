package apispec

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func load(t *testing.T) *Spec {
	t.Helper()
	p, err := SpecPath()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSpecPathIsBesideTheModule(t *testing.T) {
	p, err := SpecPath()
	if err != nil {
		t.Fatal(err)
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s has no go.mod: %v", root, err)
	}
	if want := filepath.Join(filepath.Dir(root), "shared", "specs", SpecFile); p != want {
		t.Fatalf("SpecPath() = %s, want %s", p, want)
	}
	if v := load(t).Version(); v != "1.17.0-dev" {
		t.Fatalf("spec version %q, want 1.17.0-dev", v)
	}
}

func TestSpecPathOutsideAModuleSaysWhereItLooked(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	_, err := SpecPath()
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), SpecFile) {
		t.Fatalf("SpecPath() outside a module: %v; want an error naming %s and %s", err, dir, SpecFile)
	}
	// A module with no shared/specs beside it names the path it tried.
	mod := filepath.Join(dir, "repo")
	if err := os.MkdirAll(filepath.Join(mod, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join(mod, "sub"))
	_, err = SpecPath()
	want := filepath.Join(dir, "shared", "specs", SpecFile)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("SpecPath() without shared/: %v; want an error naming %s", err, want)
	}
}

func TestLoadFailures(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("swagger: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil {
		t.Fatal("Load of a broken file succeeded")
	}
}

// Every request banger's Firecracker driver sends must pass.
func TestDriverRequestsPass(t *testing.T) {
	s := load(t)
	ctx := context.Background()
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/", ""},
		{"PUT", "/logger", `{"log_path":"/state/vms/x/firecracker.log","level":"Info"}`},
		{"PUT", "/logger", `{"log_path":"/l","level":"Debug","show_level":true,"show_log_origin":false}`},
		{"PUT", "/metrics", `{"metrics_path":"/state/vms/x/metrics.json"}`},
		{"PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":1024}`},
		{"PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":128,"smt":false,"track_dirty_pages":false,"huge_pages":"None"}`},
		{"PUT", "/boot-source", `{"kernel_image_path":"/k/vmlinux","initrd_path":"/k/initrd.img","boot_args":"console=ttyS0 reboot=k panic=1"}`},
		{"PUT", "/boot-source", `{"kernel_image_path":"/k/vmlinux"}`},
		{"PUT", "/drives/upper", `{"drive_id":"upper","path_on_host":"/d/upper.ext4","is_root_device":false,"is_read_only":false}`},
		{"PUT", "/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/d/root.ext4","is_root_device":true,"is_read_only":true}`},
		{"PUT", "/drives/config-1", `{"drive_id":"config-1","path_on_host":"/d/config.img","is_root_device":false,"is_read_only":true,"cache_type":"Unsafe","io_engine":"Sync"}`},
		{"PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"bgtap3","guest_mac":"02:bd:0a:00:00:05"}`},
		{"PUT", "/vsock", `{"guest_cid":3,"uds_path":"/state/vms/x/vsock.sock"}`},
		{"PUT", "/actions", `{"action_type":"InstanceStart"}`},
		{"PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`},
		{"PUT", "/actions", `{"action_type":"FlushMetrics"}`},
		{"GET", "/version", ""},
		{"GET", "/machine-config", ""},
		{"GET", "/vm/config", ""},
		{"PATCH", "/vm", `{"state":"Paused"}`},
	} {
		if err := s.Validate(ctx, c.method, c.path, []byte(c.body)); err != nil {
			t.Errorf("%s %s %s: %v", c.method, c.path, c.body, err)
		}
	}
}

// Invalid requests fail, and the error names what is wrong.
func TestInvalidRequestsFail(t *testing.T) {
	s := load(t)
	ctx := context.Background()
	for _, c := range []struct {
		name, method, path, body string
		want                     []string
	}{
		{"wrong method", "POST", "/actions", `{"action_type":"InstanceStart"}`, []string{"no POST operation", "PUT"}},
		{"GET of a PUT-only path", "GET", "/boot-source", "", []string{"no GET operation"}},
		{"DELETE", "DELETE", "/drives/rootfs", "", []string{"no DELETE operation", "PATCH", "PUT"}},
		{"unknown path", "PUT", "/reboot", `{}`, []string{"/reboot", "no such path"}},
		{"trailing slash", "PUT", "/logger/", `{"log_path":"/l"}`, []string{"no such path"}},
		{"empty path parameter", "PUT", "/drives/", `{"drive_id":"a","is_root_device":true}`, []string{"no such path"}},
		{"nested path parameter", "PUT", "/drives/a/b", `{"drive_id":"a","is_root_device":true}`, []string{"no such path"}},
		{"relative path", "PUT", "actions", `{"action_type":"InstanceStart"}`, []string{"must start with /"}},
		{"missing vcpu_count", "PUT", "/machine-config", `{"mem_size_mib":256}`, []string{`"vcpu_count"`, "missing"}},
		{"missing mem_size_mib", "PUT", "/machine-config", `{"vcpu_count":2}`, []string{`"mem_size_mib"`, "missing"}},
		{"vcpu_count as a string", "PUT", "/machine-config", `{"vcpu_count":"2","mem_size_mib":256}`, []string{`"vcpu_count"`, "integer"}},
		{"vcpu_count fractional", "PUT", "/machine-config", `{"vcpu_count":1.5,"mem_size_mib":256}`, []string{`"vcpu_count"`, "integer"}},
		{"vcpu_count above 32", "PUT", "/machine-config", `{"vcpu_count":33,"mem_size_mib":256}`, []string{`"vcpu_count"`, "32"}},
		{"vcpu_count zero", "PUT", "/machine-config", `{"vcpu_count":0,"mem_size_mib":256}`, []string{`"vcpu_count"`, "1"}},
		{"huge_pages enum", "PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":256,"huge_pages":"1G"}`, []string{`"huge_pages"`, "allowed values"}},
		{"unknown action", "PUT", "/actions", `{"action_type":"Reboot"}`, []string{`"action_type"`, "allowed values", "InstanceStart"}},
		{"action lower case", "PUT", "/actions", `{"action_type":"instancestart"}`, []string{`"action_type"`}},
		{"missing action_type", "PUT", "/actions", `{}`, []string{`"action_type"`, "missing"}},
		{"no body where required", "PUT", "/actions", ``, []string{"body", "required"}},
		{"body not JSON", "PUT", "/actions", `{"action_type":`, []string{"body"}},
		{"body of the wrong type", "PUT", "/actions", `["InstanceStart"]`, []string{"object"}},
		{"missing kernel_image_path", "PUT", "/boot-source", `{"boot_args":"console=ttyS0"}`, []string{`"kernel_image_path"`, "missing"}},
		{"boot_args not a string", "PUT", "/boot-source", `{"kernel_image_path":"/k","boot_args":["a"]}`, []string{`"boot_args"`, "string"}},
		{"drive without is_root_device", "PUT", "/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/d"}`, []string{`"is_root_device"`, "missing"}},
		{"drive without drive_id", "PUT", "/drives/rootfs", `{"path_on_host":"/d","is_root_device":true}`, []string{`"drive_id"`, "missing"}},
		{"is_read_only as a string", "PUT", "/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/d","is_root_device":false,"is_read_only":"yes"}`, []string{`"is_read_only"`, "boolean"}},
		{"net without host_dev_name", "PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","guest_mac":"02:00:00:00:00:01"}`, []string{`"host_dev_name"`, "missing"}},
		{"vsock cid below 3", "PUT", "/vsock", `{"guest_cid":2,"uds_path":"/v.sock"}`, []string{`"guest_cid"`, "3"}},
		{"vsock without uds_path", "PUT", "/vsock", `{"guest_cid":3}`, []string{`"uds_path"`, "missing"}},
		{"metrics without metrics_path", "PUT", "/metrics", `{}`, []string{`"metrics_path"`, "missing"}},
		{"logger level enum is case-sensitive in the spec", "PUT", "/logger", `{"log_path":"/l","level":"info"}`, []string{`"level"`, "allowed values"}},
		{"nested field", "PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"t","rx_rate_limiter":{"bandwidth":{"size":1}}}`, []string{`"rx_rate_limiter.bandwidth.refill_time"`, "missing"}},
		{"body on GET /", "GET", "/", `{"x":1}`, []string{"body"}},
	} {
		err := s.Validate(ctx, c.method, c.path, []byte(c.body))
		if err == nil {
			t.Errorf("%s: %s %s %s passed validation", c.name, c.method, c.path, c.body)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", c.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q spans lines", c.name, err)
		}
	}
}

// Several problems in one body are all reported.
func TestEveryProblemIsNamed(t *testing.T) {
	err := load(t).Validate(context.Background(), "PUT", "/machine-config", []byte(`{"vcpu_count":"2","smt":"no"}`))
	if err == nil {
		t.Fatal("passed")
	}
	for _, f := range []string{`"vcpu_count"`, `"mem_size_mib"`, `"smt"`} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not name %s", err, f)
		}
	}
}

// The spec never forbids extra fields: no schema says
// additionalProperties: false. So Validate accepts them, and
// UndeclaredFields is how a caller finds them.
func TestExtraFieldsAreAllowedBySpecButReported(t *testing.T) {
	s := load(t)
	for name, schema := range s.doc.Components.Schemas {
		if ap := schema.Value.AdditionalProperties; ap.Has != nil && !*ap.Has {
			t.Errorf("schema %s forbids additional properties; the validator tests assume none does", name)
		}
	}
	ctx := context.Background()
	for _, c := range []struct {
		path, body string
		want       []string
	}{
		{"/machine-config", `{"vcpu_count":2,"mem_size_mib":256,"mem_size_mb":256}`, []string{"mem_size_mb"}},
		{"/boot-source", `{"kernel_image_path":"/k","initrd":"/i","boot_args":"x"}`, []string{"initrd"}},
		{"/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"t","rx_rate_limiter":{"bandwidth":{"size":1,"refill_time":1,"burst":2}}}`, []string{"rx_rate_limiter.bandwidth.burst"}},
		{"/metrics", `{"metrics_path":"/m","properties":{"any":"thing"}}`, nil},
		{"/mmds", `{"latest":{"meta-data":{"x":1}}}`, nil},
		{"/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/d","is_root_device":true,"is_read_only":false}`, nil},
	} {
		if err := s.Validate(ctx, "PUT", c.path, []byte(c.body)); err != nil {
			t.Errorf("PUT %s %s: %v", c.path, c.body, err)
		}
		got, err := s.UndeclaredFields("PUT", c.path, []byte(c.body))
		if err != nil {
			t.Errorf("UndeclaredFields(PUT %s): %v", c.path, err)
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("UndeclaredFields(PUT %s %s) = %q, want %q", c.path, c.body, got, c.want)
		}
	}
	if _, err := s.UndeclaredFields("PUT", "/nope", []byte(`{}`)); err == nil {
		t.Error("UndeclaredFields of an unknown path succeeded")
	}
}

func TestLookup(t *testing.T) {
	s := load(t)
	op, err := s.Lookup("PUT", "/drives/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	if op.Template != "/drives/{drive_id}" || op.ID != "putGuestDriveByID" || op.PathParams["drive_id"] != "rootfs" ||
		!op.HasBody || !op.BodyRequired || !strings.Contains(op.Summary, "Pre-boot only") {
		t.Fatalf("Lookup(PUT /drives/rootfs) = %+v", op)
	}
	op, err = s.Lookup("PUT", "/machine-config")
	if err != nil {
		t.Fatal(err)
	}
	if !op.HasBody || op.BodyRequired {
		t.Fatalf("PUT /machine-config: HasBody %v BodyRequired %v; the spec gives it an optional body", op.HasBody, op.BodyRequired)
	}
	op, err = s.Lookup("GET", "/")
	if err != nil || op.HasBody || op.ID != "describeInstance" {
		t.Fatalf("Lookup(GET /) = %+v, %v", op, err)
	}
	if _, err := s.Lookup("PUT", "/"); err == nil {
		t.Fatal("Lookup(PUT /) succeeded")
	}
	ops := s.Operations()
	seen := map[string]bool{}
	for _, o := range ops {
		seen[o.Method+" "+o.Template] = true
	}
	for _, w := range []string{"GET /", "PUT /actions", "PUT /boot-source", "PUT /drives/{drive_id}", "PATCH /drives/{drive_id}",
		"PUT /logger", "PUT /machine-config", "PUT /metrics", "PUT /network-interfaces/{iface_id}", "PUT /vsock"} {
		if !seen[w] {
			t.Errorf("Operations() lacks %s", w)
		}
	}
}

// A Spec is shared by the fake's handlers: validation must be safe
// concurrently (run with -race).
func TestValidateConcurrently(t *testing.T) {
	s := load(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if err := s.Validate(context.Background(), "PUT", "/machine-config", []byte(`{"vcpu_count":2,"mem_size_mib":256}`)); err != nil {
					t.Errorf("goroutine %d: %v", i, err)
					return
				}
				if err := s.Validate(context.Background(), "PUT", "/machine-config", []byte(`{"vcpu_count":"2"}`)); err == nil {
					t.Errorf("goroutine %d: invalid body passed", i)
					return
				}
			}
		}()
	}
	wg.Wait()
}
