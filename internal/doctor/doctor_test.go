package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeFacts is a host described by fields; healthy() is one where every
// check passes.
type fakeFacts struct {
	driver, reason string
	notRoot        bool
	kvm            KVM
	bins           map[string]Binary
	tun            error
	net            Network
	fss            []string
	fssErr         error
	sock           Socket
	free           uint64
	freeErr        error
	image          Image
	imageErr       error
	catalogErr     error
	owned          Owned
	ownedErr       error
	jailer         Jailer
}

func healthy() *fakeFacts {
	return &fakeFacts{
		driver: "qemu", reason: "qemu with KVM",
		kvm: KVM{Usable: true, Reason: "a probe guest booted under KVM to userspace in 0.9s"},
		bins: map[string]Binary{
			"firecracker":        {Path: "/usr/local/bin/firecracker", Version: "Firecracker v1.12.0"},
			"jailer":             {Path: "/usr/local/bin/jailer"},
			"qemu-system-x86_64": {Path: "/usr/bin/qemu-system-x86_64", Version: "QEMU emulator version 7.2.22"},
			"mmdebstrap":         {Path: "/usr/bin/mmdebstrap", Version: "mmdebstrap 1.3.5"},
			"mkfs.ext4":          {Path: "/usr/sbin/mkfs.ext4"},
		},
		fss:    []string{"ext4", "overlay", "tmpfs"},
		sock:   Socket{Path: "/run/banger/bangerd.sock", Mode: 0o660, GID: 990, Group: "banger", GroupExists: true, GroupGID: 990},
		free:   50 << 30,
		image:  Image{Name: "debian-12", Local: true, InCatalog: true, Buildable: true},
		jailer: Jailer{On: true, ChrootBase: "/var/lib/banger/jail", SameFilesystem: true},
		owned: Owned{Bridge: "banger0", NFTable: "inet banger", Taps: []string{"bgtap0", "bgtap1", "bgtap2"}, HeldTaps: []string{"bgtap2"}, PoolSize: 2,
			Running: []VMProcess{{Name: "dev", PID: 4242, Alive: true}},
			VMMs:    []Process{{PID: 4242, Cmdline: "qemu-system-x86_64 -pidfile /var/lib/banger/vms/x/qemu.pid"}}},
	}
}

func (f *fakeFacts) Driver() (string, string, bool)              { return f.driver, f.reason, f.notRoot }
func (f *fakeFacts) KVM(context.Context) KVM                     { return f.kvm }
func (f *fakeFacts) Tun() error                                  { return f.tun }
func (f *fakeFacts) Network(context.Context) Network             { return f.net }
func (f *fakeFacts) Filesystems() ([]string, error)              { return f.fss, f.fssErr }
func (f *fakeFacts) Socket() Socket                              { return f.sock }
func (f *fakeFacts) StateDir() string                            { return "/var/lib/banger" }
func (f *fakeFacts) FreeBytes(string) (uint64, error)            { return f.free, f.freeErr }
func (f *fakeFacts) DefaultImage(context.Context) (Image, error) { return f.image, f.imageErr }
func (f *fakeFacts) Catalog() (string, int, error) {
	return "/etc/banger/catalog.toml", 0, f.catalogErr
}
func (f *fakeFacts) Owned(context.Context) (Owned, error) { return f.owned, f.ownedErr }
func (f *fakeFacts) Saved(context.Context) (Saved, error) {
	return Saved{Snapshots: 2, SnapshotBytes: 3 << 30, Templates: 1, TemplateBytes: 1 << 29}, nil
}
func (f *fakeFacts) Jailer() Jailer { return f.jailer }
func (f *fakeFacts) Binary(_ context.Context, name string, _ ...string) Binary {
	return f.bins[name]
}

func statuses(checks []Check) map[string]Status {
	m := map[string]Status{}
	for _, c := range checks {
		m[c.Name] = c.Status
	}
	return m
}

func find(t *testing.T, checks []Check, name string) Check {
	t.Helper()
	for _, c := range checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check named %q in %+v", name, checks)
	return Check{}
}

func TestHealthyHostIsAllOK(t *testing.T) {
	checks := Run(context.Background(), healthy())
	if len(checks) != 17 {
		t.Errorf("%d checks, want 17", len(checks))
	}
	for _, c := range checks {
		if c.Status != OK || c.Fix != "" || c.Detail == "" {
			t.Errorf("healthy host: %+v", c)
		}
	}
	if Failed(checks) {
		t.Error("Failed on a healthy host")
	}
	if d := find(t, checks, NameHost).Detail; d != "bridge banger0, nftables table inet banger, 3 tap(s): 1 held by VMs, 2 ready in the pool, 1 running VM process(es)" {
		t.Errorf("host detail %q", d)
	}
	if d := find(t, checks, NameSaved).Detail; d != "2 snapshots take 3.0 GiB; 1 templates for instant VMs take 0.5 GiB" {
		t.Errorf("saved detail %q", d)
	}
}

func TestSituations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(f *fakeFacts)
		// want are the statuses that differ from OK; every other check must
		// stay OK.
		want map[string]Status
		// detail and fix must appear in the first non-OK check in want order.
		check, detail, fix string
	}{
		{
			name: "this machine: PVM, no firecracker, default image buildable",
			change: func(f *fakeFacts) {
				f.kvm = KVM{Cause: "incompatible", Reason: "KVM present but cannot run standard guests (paravirtual kvm_pvm)"}
				delete(f.bins, "firecracker")
				delete(f.bins, "jailer")
				f.jailer = Jailer{}
				f.image.Local = false
			},
			want:   map[string]Status{NameKVM: Warn, NameFirecracker: Warn, NameDefaultImage: Warn},
			check:  NameKVM,
			detail: "KVM present but cannot run standard guests (paravirtual kvm_pvm); using QEMU with TCG",
			fix:    "TCG",
		},
		{
			name:   "no firecracker",
			change: func(f *fakeFacts) { delete(f.bins, "firecracker") },
			want:   map[string]Status{NameFirecracker: Warn},
			check:  NameFirecracker, detail: "not installed", fix: FixFirecracker,
		},
		{
			name: "firecracker that does not run",
			change: func(f *fakeFacts) {
				f.bins["firecracker"] = Binary{Path: "/usr/local/bin/firecracker", Err: errors.New("exec format error")}
			},
			want:  map[string]Status{NameFirecracker: Warn},
			check: NameFirecracker, detail: "exec format error", fix: "reinstall",
		},
		{
			name: "no qemu and no other driver",
			change: func(f *fakeFacts) {
				delete(f.bins, NameQEMU)
				delete(f.bins, "firecracker")
				f.driver, f.reason = "none", "qemu-system-x86_64 not found"
				f.kvm = KVM{Cause: "not-probed", Reason: "KVM not probed: qemu-system-x86_64 not found"}
			},
			want:  map[string]Status{NameDriver: Fail, NameKVM: Warn, NameFirecracker: Warn, NameQEMU: Fail},
			check: NameQEMU, detail: "not installed", fix: "apt-get install qemu-system-x86",
		},
		{
			name:   "jailer on, not installed",
			change: func(f *fakeFacts) { delete(f.bins, "jailer") },
			want:   map[string]Status{NameJailer: Fail},
			check:  NameJailer, detail: "no jailer is on PATH", fix: "jailer = false",
		},
		{
			name:   "jails on another filesystem",
			change: func(f *fakeFacts) { f.jailer.ChrootBase, f.jailer.SameFilesystem = "/srv/jailer", false },
			want:   map[string]Status{NameJailer: Fail},
			check:  NameJailer, detail: "jailer_chroot_base /srv/jailer is on another filesystem than the state directory /var/lib/banger", fix: "/var/lib/banger/jail",
		},
		{
			name:   "jails' filesystem unknown",
			change: func(f *fakeFacts) { f.jailer.Err = errors.New("stat /srv: permission denied") },
			want:   map[string]Status{NameJailer: Warn},
			check:  NameJailer, detail: "permission denied", fix: "jailer_chroot_base",
		},
		{
			name:   "jailer off: no jailer check",
			change: func(f *fakeFacts) { f.jailer = Jailer{}; delete(f.bins, "jailer") },
			want:   map[string]Status{},
			check:  NameFirecracker, detail: "no jailer",
		},
		{
			name:   "no qemu but firecracker with KVM",
			change: func(f *fakeFacts) { delete(f.bins, NameQEMU) },
			want:   map[string]Status{NameQEMU: Warn},
			check:  NameQEMU, detail: "Firecracker runs guests", fix: FixQEMU,
		},
		{
			name: "firecracker without usable KVM does not excuse missing qemu",
			change: func(f *fakeFacts) {
				delete(f.bins, NameQEMU)
				f.kvm = KVM{Cause: "no-device", Reason: "/dev/kvm does not exist"}
			},
			want:  map[string]Status{NameKVM: Warn, NameFirecracker: Warn, NameQEMU: Fail},
			check: NameFirecracker, detail: "unused", fix: "KVM",
		},
		{
			name: "daemon not root",
			change: func(f *fakeFacts) {
				f.driver, f.reason, f.notRoot = "none", "bangerd runs as uid 1000, but booting VMs needs root", true
			},
			want:  map[string]Status{NameDriver: Fail},
			check: NameDriver, detail: "uid 1000", fix: "sudo banger daemon start",
		},
		{
			name: "no access to /dev/kvm",
			change: func(f *fakeFacts) {
				f.kvm = KVM{Cause: "no-access", Reason: "/dev/kvm exists but this process cannot open it"}
			},
			want:  map[string]Status{NameKVM: Warn, NameFirecracker: Warn},
			check: NameKVM, detail: "cannot open it; using QEMU with TCG", fix: "root",
		},
		{
			name:   "KVM probe boot failed",
			change: func(f *fakeFacts) { f.kvm = KVM{Cause: "boot-failed", Reason: "a probe guest did not boot"} },
			want:   map[string]Status{NameKVM: Warn, NameFirecracker: Warn},
			check:  NameKVM, detail: "did not boot", fix: "dmesg",
		},
		{
			name:   "no mmdebstrap, image local",
			change: func(f *fakeFacts) { delete(f.bins, "mmdebstrap") },
			want:   map[string]Status{NameMmdebstrap: Warn},
			check:  NameMmdebstrap, fix: FixMmdebstrap,
		},
		{
			name:   "no mkfs.ext4",
			change: func(f *fakeFacts) { delete(f.bins, "mkfs.ext4") },
			want:   map[string]Status{NameMkfs: Fail},
			check:  NameMkfs, fix: "apt-get install e2fsprogs",
		},
		{
			name:   "no tun",
			change: func(f *fakeFacts) { f.tun = errors.New("/dev/net/tun: no such file or directory") },
			want:   map[string]Status{NameTun: Fail},
			check:  NameTun, detail: "no such file", fix: "modprobe tun",
		},
		{
			name:   "netlink refused",
			change: func(f *fakeFacts) { f.net.LinksErr = errors.New("operation not permitted") },
			want:   map[string]Status{NameNetwork: Fail},
			check:  NameNetwork, detail: "netlink", fix: "root",
		},
		{
			name:   "nftables missing",
			change: func(f *fakeFacts) { f.net.NFTErr = errors.New("protocol not supported") },
			want:   map[string]Status{NameNetwork: Fail},
			check:  NameNetwork, detail: "nftables", fix: "modprobe nf_tables",
		},
		{
			name:   "no overlay on the host",
			change: func(f *fakeFacts) { f.fss = []string{"ext4"} },
			want:   map[string]Status{NameOverlay: Warn},
			check:  NameOverlay, detail: "VMs still work", fix: "modprobe overlay",
		},
		{
			name:   "socket world-readable",
			change: func(f *fakeFacts) { f.sock.Mode = 0o666 },
			want:   map[string]Status{NameSocket: Fail},
			check:  NameSocket, detail: "0666", fix: "restart the daemon",
		},
		{
			name:   "socket group missing",
			change: func(f *fakeFacts) { f.sock.GroupExists, f.sock.GID, f.sock.GroupGID = false, 0, 0 },
			want:   map[string]Status{NameSocket: Warn},
			check:  NameSocket, detail: `group "banger" does not exist`, fix: "groupadd banger",
		},
		{
			name:   "no socket group configured",
			change: func(f *fakeFacts) { f.sock.Group, f.sock.GroupExists, f.sock.GID, f.sock.GroupGID = "", false, 0, 0 },
			want:   map[string]Status{},
			check:  NameSocket, detail: "no socket_group configured",
		},
		{
			name:   "socket owned by another group",
			change: func(f *fakeFacts) { f.sock.GID = 0 },
			want:   map[string]Status{NameSocket: Warn},
			check:  NameSocket, detail: "gid 0", fix: "restart",
		},
		{
			name:   "socket not inspectable",
			change: func(f *fakeFacts) { f.sock.Err = os.ErrNotExist },
			want:   map[string]Status{NameSocket: Fail},
			check:  NameSocket, fix: "restart",
		},
		{
			name:   "disk low",
			change: func(f *fakeFacts) { f.free = 3 << 30 },
			want:   map[string]Status{NameDisk: Warn},
			check:  NameDisk, detail: "3.0 GiB free", fix: "free space",
		},
		{
			name:   "disk nearly full",
			change: func(f *fakeFacts) { f.free = 512 << 20 },
			want:   map[string]Status{NameDisk: Fail},
			check:  NameDisk, detail: "0.5 GiB free", fix: "free space",
		},
		{
			name:   "disk unmeasurable",
			change: func(f *fakeFacts) { f.freeErr = errors.New("statfs: no such file") },
			want:   map[string]Status{NameDisk: Warn},
			check:  NameDisk, detail: "no such file", fix: "state directory",
		},
		{
			name:   "default image buildable",
			change: func(f *fakeFacts) { f.image.Local = false },
			want:   map[string]Status{NameDefaultImage: Warn},
			check:  NameDefaultImage, detail: "debian-12 will be built on first use (~35 s)", fix: "banger image pull debian-12",
		},
		{
			name: "default image in catalog, no mmdebstrap",
			change: func(f *fakeFacts) {
				f.image.Local, f.image.Buildable = false, false
				delete(f.bins, "mmdebstrap")
			},
			want:  map[string]Status{NameMmdebstrap: Warn, NameDefaultImage: Fail},
			check: NameDefaultImage, detail: "cannot be built", fix: FixMmdebstrap,
		},
		{
			name:   "default image unknown",
			change: func(f *fakeFacts) { f.image = Image{Name: "nope"} },
			want:   map[string]Status{NameDefaultImage: Fail},
			check:  NameDefaultImage, detail: "neither local nor in the catalog", fix: "default_image",
		},
		{
			name:   "broken catalog file",
			change: func(f *fakeFacts) { f.catalogErr = errors.New(`catalog x: image "a": give oci or debian`) },
			want:   map[string]Status{NameCatalog: Fail},
			check:  NameCatalog, detail: "give oci or debian", fix: "catalog.toml",
		},
		{
			name:   "image store error",
			change: func(f *fakeFacts) { f.imageErr = errors.New("database is locked") },
			want:   map[string]Status{NameDefaultImage: Fail},
			check:  NameDefaultImage, detail: "database is locked", fix: "log",
		},
		{
			name: "orphan VMM process",
			change: func(f *fakeFacts) {
				f.owned.VMMs = append(f.owned.VMMs, Process{PID: 777, Cmdline: "qemu-system-x86_64 -pidfile /var/lib/banger/vms/old/qemu.pid"})
			},
			want:  map[string]Status{NameOrphans: Warn},
			check: NameOrphans, detail: "VMM process 777 belongs to no running VM", fix: "banger vm delete --force",
		},
		{
			name:   "taps beyond the pool",
			change: func(f *fakeFacts) { f.owned.Taps = append(f.owned.Taps, "bgtap3", "bgtap4") },
			want:   map[string]Status{NameOrphans: Warn},
			check:  NameOrphans, detail: "tap(s) bgtap3, bgtap4 held by no VM (the pool keeps 2)", fix: "banger doctor --clean",
		},
		{
			name:   "VM recorded running, process gone",
			change: func(f *fakeFacts) { f.owned.Running[0].Alive = false; f.owned.VMMs = nil },
			want:   map[string]Status{NameOrphans: Warn},
			check:  NameOrphans, detail: "VM dev is recorded as running but its process 4242 is gone", fix: "banger vm delete --force",
		},
		{
			name:   "inventory fails",
			change: func(f *fakeFacts) { f.ownedErr = errors.New("listing links: permission denied") },
			want:   map[string]Status{NameHost: Warn},
			check:  NameHost, detail: "permission denied", fix: "root",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := healthy()
			tc.change(f)
			checks := Run(context.Background(), f)
			got := statuses(checks)
			for _, c := range checks {
				want, ok := tc.want[c.Name]
				if !ok {
					want = OK
				}
				if c.Status != want {
					t.Errorf("%s: %s (%s), want %s", c.Name, c.Status, c.Detail, want)
				}
				if c.Status != OK && (c.Fix == "" || strings.Contains(c.Fix, "\n")) {
					t.Errorf("%s is %s without a one-line fix: %+v", c.Name, c.Status, c)
				}
				if c.Status == OK && c.Fix != "" {
					t.Errorf("%s is OK but has a fix %q", c.Name, c.Fix)
				}
			}
			for name := range tc.want {
				if _, ok := got[name]; !ok {
					t.Errorf("no check %q", name)
				}
			}
			if _, ok := got[NameJailer]; ok != f.jailer.On {
				t.Errorf("a jailer check with jailer = %v", f.jailer.On)
			}
			c := find(t, checks, tc.check)
			if !strings.Contains(c.Detail, tc.detail) || !strings.Contains(c.Fix, tc.fix) {
				t.Errorf("%s: detail %q fix %q; want them to hold %q and %q", c.Name, c.Detail, c.Fix, tc.detail, tc.fix)
			}
			wantFail := false
			for _, s := range tc.want {
				wantFail = wantFail || s == Fail
			}
			if Failed(checks) != wantFail {
				t.Errorf("Failed = %v, want %v", Failed(checks), wantFail)
			}
		})
	}
}

func TestCheckJSON(t *testing.T) {
	b, err := json.Marshal([]Check{
		{Name: NameQEMU, Status: Fail, Detail: "not installed", Fix: FixQEMU},
		{Name: NameTun, Status: OK, Detail: "present"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"name":"qemu-system-x86_64","status":"FAIL","detail":"not installed","fix":"apt-get install qemu-system-x86"},` +
		`{"name":"/dev/net/tun","status":"OK","detail":"present"}]`
	if string(b) != want {
		t.Fatalf("JSON\n%s\nwant\n%s", b, want)
	}
}

func TestSystem(t *testing.T) {
	root := t.TempDir()
	proc, dev := filepath.Join(root, "proc"), filepath.Join(root, "dev")
	write := func(p, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(proc, "filesystems"), "nodev\tsysfs\n\text4\nnodev\toverlay\n")
	argv := func(a ...string) string { return strings.Join(a, "\x00") + "\x00" }
	write(filepath.Join(proc, "100", "cmdline"), argv("/usr/bin/qemu-system-x86_64", "-M", "microvm", "-drive", "id=d,file=/state/vms/a/upper.ext4,format=raw"))
	write(filepath.Join(proc, "101", "cmdline"), argv("qemu-system-x86_64", "-kernel", "/other/state/vmlinuz"))
	write(filepath.Join(proc, "102", "cmdline"), argv("tail", "-f", "/state/vms/a/console.log"))
	write(filepath.Join(proc, "103", "cmdline"), argv("firecracker", "--api-sock", "/state/vms/b/fc.sock"))
	write(filepath.Join(proc, "104", "cmdline"), "")
	write(filepath.Join(proc, "105", "cmdline"), argv("qemu-system-x86_64", "-kernel", "/statefoo/vmlinuz"))
	write(filepath.Join(proc, "self", "cmdline"), argv("firecracker", "/state/x"))
	write(filepath.Join(dev, "net", "tun"), "")

	s := System{Proc: proc, Dev: dev}
	fss, err := s.Filesystems()
	if err != nil || strings.Join(fss, ",") != "sysfs,ext4,overlay" {
		t.Errorf("filesystems %v, %v", fss, err)
	}
	ps, err := s.VMMProcesses("/state/")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range ps {
		pids = append(pids, p.PID)
	}
	if len(pids) != 2 || pids[0] != 100 || pids[1] != 103 {
		t.Errorf("VMM processes %+v, want pids 100 and 103", ps)
	}
	if err := s.Tun(); err == nil || !strings.Contains(err.Error(), "not a character device") {
		t.Errorf("a regular file as tun: %v", err)
	}
	if err := (System{Dev: root}).Tun(); err == nil {
		t.Error("a missing tun passed")
	}
	if free, err := s.FreeBytes(root); err != nil || free == 0 {
		t.Errorf("free bytes %d, %v", free, err)
	}
	if b := s.Binary(context.Background(), "sh"); b.Path == "" {
		t.Error("sh not found on PATH")
	}
	if b := s.Binary(context.Background(), "no-such-program-here", "--version"); b.Path != "" || b.Err != nil {
		t.Errorf("missing program: %+v", b)
	}
	if b := s.Binary(context.Background(), "sh", "-c", "echo 'sh 1.0'; echo more"); b.Version != "sh 1.0" || b.Err != nil {
		t.Errorf("version %+v", b)
	}
	if b := s.Binary(context.Background(), "sh", "-c", "exit 3"); b.Err == nil {
		t.Error("a failing version command gave no error")
	}
	if !Alive(os.Getpid()) || Alive(0) {
		t.Error("Alive is wrong about this process or pid 0")
	}
}

// The jailer check's filesystem comparison: a chroot base not made yet
// counts as its nearest existing parent; procfs is never the state
// directory's filesystem.
func TestSameFilesystem(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		a    string
		want bool
	}{
		{dir, true},
		{filepath.Join(dir, "jail", "not", "made"), true},
		{"/proc", false},
	} {
		got, err := (System{}).SameFilesystem(tc.a, dir)
		if err != nil || got != tc.want {
			t.Errorf("SameFilesystem(%s, %s) = %v, %v; want %v", tc.a, dir, got, err, tc.want)
		}
	}
}
