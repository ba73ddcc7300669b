package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/banger-dev/banger/internal/guest"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/rootfs"
)

// Promote makes image name of a VM's root filesystem: root is the tar
// stream the VM's own kernel made of its merged root (base plus its upper
// layer) in a maintenance boot. The stream is guest-written input: each
// entry goes through rootfs.Tree, so none lands outside the staging tree.
// The VM's identity (host keys, machine-id, hostname, hosts, banger's
// authorized key, the random seed) is taken out, so every VM made from
// the image gets its own; the kernel, modules and config are base's.
func (s *Service) Promote(ctx context.Context, name, vmName string, base model.Image, root io.Reader, p Progress) (model.Image, error) {
	return s.installNew(ctx, name, &promoteSource{s: s, vm: vmName, base: base, root: root}, p)
}

// promoteSource builds an image from a VM's exported root.
type promoteSource struct {
	s    *Service
	vm   string
	base model.Image
	root io.Reader
}

func (ps *promoteSource) Describe() string {
	from := ps.base.Name
	if from == "" {
		from = ps.base.ID
	}
	return "promoted from vm " + ps.vm + " (image " + from + ")"
}

func (*promoteSource) Fetch(context.Context, Progress) (string, error) { return "", nil }

func (ps *promoteSource) Build(ctx context.Context, work string, p Progress) (Artifacts, *model.ImageConfig, error) {
	treeDir := filepath.Join(work, "tree")
	if err := os.Mkdir(treeDir, 0o755); err != nil {
		return Artifacts{}, nil, err
	}
	tree, err := rootfs.Open(treeDir)
	if err != nil {
		return Artifacts{}, nil, err
	}
	defer tree.Close()
	p.Phase("receiving the vm's root filesystem", 0)
	start := time.Now()
	n, err := receiveRoot(ctx, tree, ps.root, p)
	if err != nil {
		return Artifacts{}, nil, fmt.Errorf("receiving vm %s's root filesystem: %w", ps.vm, err)
	}
	received := time.Since(start)
	if err := stripIdentity(tree); err != nil {
		return Artifacts{}, nil, err
	}
	p.Phase("writing the root filesystem", 0)
	ext4Start := time.Now()
	img := filepath.Join(work, "rootfs.ext4")
	if err := rootfs.WriteExt4(ctx, treeDir, img, rootfs.Ext4Options{Label: RootfsLabel}); err != nil {
		return Artifacts{}, nil, err
	}
	fi, err := os.Stat(img)
	if err != nil {
		return Artifacts{}, nil, err
	}
	ps.s.log.Info("vm root received and written", "vm", ps.vm, "bytes", n, "receive", received.Round(time.Millisecond),
		"ext4", time.Since(ext4Start).Round(time.Millisecond))
	return Artifacts{Kernel: ps.base.KernelPath, ModulesDir: ps.base.ModulesPath, Rootfs: img, SizeBytes: fi.Size()}, ps.base.Config, nil
}

// receiveRoot writes the entries of a root export into tree, as they
// are (owners, modes, xattrs, devices, links), and returns the bytes
// read. A stream without guest.ExportEnd last broke off and is refused.
func receiveRoot(ctx context.Context, tree *rootfs.Tree, r io.Reader, p Progress) (int64, error) {
	cr := &countingReader{r: r}
	tr := tar.NewReader(cr)
	ended := false
	for {
		if err := ctx.Err(); err != nil {
			return cr.n, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return cr.n, fmt.Errorf("reading the stream: %w", err)
		}
		if ended {
			return cr.n, errors.New("entries after the end of the export")
		}
		if rootfs.Clean(hdr.Name) == guest.ExportEnd {
			ended = true
			continue
		}
		if rootfs.Clean(hdr.Name) == "" {
			continue // the root itself
		}
		if err := tree.Put(hdr, tr, rootfs.PutOptions{KeepOwner: true}); err != nil {
			return cr.n, err
		}
		p.Add(int64(len(hdr.Name)) + hdr.Size)
	}
	if !ended {
		return cr.n, errors.New("the export broke off before its end (did the vm's maintenance boot die? see its console log)")
	}
	return cr.n, tree.Finish(rootfs.PutOptions{KeepOwner: true})
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// stripIdentity takes what made the tree one VM's out of it, leaving what
// the agent or systemd makes afresh for each VM at boot: its SSH host
// keys, machine-id (empty: generated at first boot), hostname, hosts and
// resolv.conf, banger's authorized key and sshd drop-in, and systemd's
// random seed (clones sharing a seed would share their first random
// numbers).
func stripIdentity(t *rootfs.Tree) error {
	if _, err := t.Lstat("etc/ssh"); err == nil {
		if err := removeHostKeys(t); err != nil {
			return err
		}
	}
	for _, name := range []string{"etc/hostname", "root/.ssh/authorized_keys", "etc/ssh/sshd_config.d/banger.conf",
		"var/lib/systemd/random-seed", "var/lib/dbus/machine-id"} {
		if fi, err := t.Lstat(name); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			continue // dbus's is a link to /etc/machine-id
		}
		if err := t.RemoveAll(name); err != nil {
			return fmt.Errorf("removing /%s: %w", name, err)
		}
	}
	if _, err := t.Lstat("etc/machine-id"); err == nil {
		if err := t.WriteFile("etc/machine-id", nil, 0o444); err != nil {
			return fmt.Errorf("emptying /etc/machine-id: %w", err)
		}
	}
	if err := t.WriteFile("etc/hosts", []byte(localHosts), 0o644); err != nil {
		return fmt.Errorf("writing /etc/hosts: %w", err)
	}
	return writeTreeFile(t, "etc/resolv.conf", nil)
}
