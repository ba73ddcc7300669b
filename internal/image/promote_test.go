package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/banger-dev/banger/internal/guest"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/rootfs"
)

type entry struct {
	hdr  tar.Header
	body string
}

func exportStream(t *testing.T, end bool, entries ...entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.body))
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if end {
		if err := tw.WriteHeader(&tar.Header{Name: guest.ExportEnd, Typeflag: tar.TypeReg, Mode: 0o600}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func dir(name string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}}
}
func file(name, body string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg}, body: body}
}

// A VM's export is received as it is, less the VM's identity; a stream
// that broke off, or that tries to write outside the tree, is refused.
func TestReceiveRootAndStripIdentity(t *testing.T) {
	ctx := context.Background()
	treeDir := t.TempDir()
	tree, err := rootfs.Open(treeDir)
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	stream := exportStream(t, true,
		dir("./"), dir("etc/"), dir("etc/ssh/"), dir("root/"), dir("root/.ssh/"), dir("var/"), dir("var/lib/"), dir("var/lib/systemd/"),
		file("etc/motd", "changed\n"),
		file("etc/hostname", "src\n"),
		file("etc/machine-id", "651a2166930440a89403520a189c5f76\n"),
		file("etc/hosts", "172.16.0.2 src\n"),
		file("etc/ssh/ssh_host_ed25519_key", "secret"),
		file("etc/ssh/ssh_host_ed25519_key.pub", "pub"),
		file("etc/ssh/sshd_config", "Port 22\n"),
		file("root/.ssh/authorized_keys", "ssh-ed25519 AAAA banger\n"),
		file("var/lib/systemd/random-seed", "seed"),
		entry{hdr: tar.Header{Name: "etc/owned", Typeflag: tar.TypeReg, Uid: 1000, Gid: 70000, Mode: 0o4755}, body: "x"},
		entry{hdr: tar.Header{Name: "etc/again", Typeflag: tar.TypeLink, Linkname: "etc/motd"}},
	)
	if _, err := receiveRoot(ctx, tree, stream, phases(func(string) {})); err != nil {
		t.Fatal(err)
	}
	if err := stripIdentity(tree); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"etc/motd": "changed\n", "etc/machine-id": "", "etc/ssh/sshd_config": "Port 22\n", "etc/again": "changed\n", "etc/hosts": localHosts} {
		if b, err := os.ReadFile(filepath.Join(treeDir, name)); err != nil || string(b) != want {
			t.Errorf("/%s: %q %v, want %q", name, b, err, want)
		}
	}
	for _, gone := range []string{"etc/hostname", "etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub", "root/.ssh/authorized_keys", "var/lib/systemd/random-seed", guest.ExportEnd} {
		if _, err := os.Lstat(filepath.Join(treeDir, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("/%s is still there (%v)", gone, err)
		}
	}
	fi, err := os.Stat(filepath.Join(treeDir, "etc/owned"))
	if err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Errorf("setuid file: %v %v", fi, err)
	} else if st := fi.Sys().(*syscall.Stat_t); os.Geteuid() == 0 && (st.Uid != 1000 || st.Gid != 70000) {
		t.Errorf("owner %d:%d, want 1000:70000", st.Uid, st.Gid)
	}

	// Names and links that point out of the tree stay in it.
	outside := t.TempDir()
	d := t.TempDir()
	tr, err := rootfs.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	hostile := exportStream(t, true, file("../../escape", "x"),
		entry{hdr: tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: outside}}, file("link/through", "x"),
		entry{hdr: tar.Header{Name: "hard", Typeflag: tar.TypeLink, Linkname: "../../../etc/passwd"}})
	_, _ = receiveRoot(ctx, tr, hostile, phases(func(string) {}))
	tr.Close()
	if left, _ := os.ReadDir(outside); len(left) != 0 {
		t.Errorf("a write went through a planted symlink: %v", left)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(d), "escape")); err == nil {
		t.Error("an entry climbed out of the tree")
	}

	for name, s := range map[string]*bytes.Buffer{
		"broke off": exportStream(t, false, file("etc/motd", "x")),
		"after end": func() *bytes.Buffer {
			b := exportStream(t, true)
			return bytes.NewBuffer(append(b.Bytes()[:b.Len()-1024], exportStream(t, false, file("late", "x")).Bytes()...))
		}(),
	} {
		d := t.TempDir()
		tr, err := rootfs.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		_, err = receiveRoot(ctx, tr, s, phases(func(string) {}))
		tr.Close()
		if err == nil {
			t.Errorf("%s: the stream was taken", name)
		}
	}
}

// Promote publishes the received root with the base image's kernel and
// config, under a name that must be new.
func TestPromote(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t)
	base := t.TempDir()
	mods := filepath.Join(base, "modules", "6.1")
	if err := os.MkdirAll(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	for p, body := range map[string]string{filepath.Join(mods, "modules.dep"): "", filepath.Join(base, "vmlinuz"): "k"} {
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &model.ImageConfig{Env: []string{"A=1"}}
	bim := model.Image{Name: "base", ID: "sha256:b", KernelPath: filepath.Join(base, "vmlinuz"), ModulesPath: mods, Config: cfg}
	im, err := s.Promote(ctx, "made", "src", bim, exportStream(t, true, dir("etc/"), file("etc/motd", "hi\n")), phases(func(string) {}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(im.Source, "promoted from vm src (image base)") || im.Config == nil || im.Config.Env[0] != "A=1" {
		t.Fatalf("promoted %+v", im)
	}
	if _, err := os.Stat(im.RootfsPath); err != nil {
		t.Fatal(err)
	}
	_, err = s.Promote(ctx, "made", "src", bim, exportStream(t, true), phases(func(string) {}))
	if !errors.Is(err, model.ErrConflict) {
		t.Fatalf("a second promote to one name: %v", err)
	}
}
