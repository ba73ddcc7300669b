package daemon

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/image"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/oci"
	"github.com/banger-dev/banger/internal/rootfs"
	"github.com/banger-dev/banger/internal/rpc"
)

func (d *Daemon) imageList(ctx context.Context, _ rpc.Caller, _ api.Empty) ([]api.Image, error) {
	ims, err := d.images.List(ctx)
	if err != nil {
		return nil, err
	}
	users, err := d.imageUsers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, 0, len(ims))
	for _, im := range ims {
		w := wireImage(im)
		w.UsedBy = append(w.UsedBy, users[im.ID]...)
		out = append(out, w)
	}
	return out, nil
}

// imageUsers maps image content IDs to the VMs built on them; a VM whose
// image is not local yet counts for the content its name refers to.
func (d *Daemon) imageUsers(ctx context.Context) (map[string][]string, error) {
	vms, err := d.vms.List(ctx)
	if err != nil {
		return nil, err
	}
	users := map[string][]string{}
	for _, v := range vms {
		id := v.ImageID
		if id == "" {
			im, err := d.images.Get(ctx, v.Image)
			if err != nil {
				continue
			}
			id = im.ID
		}
		users[id] = append(users[id], v.Name)
	}
	return users, nil
}

func (d *Daemon) imageShow(ctx context.Context, _ rpc.Caller, p api.ImageRef) (api.Image, error) {
	im, err := d.images.Find(ctx, p.Name)
	if err != nil {
		return api.Image{}, err
	}
	users, err := d.imageUsers(ctx)
	if err != nil {
		return api.Image{}, err
	}
	w := wireImage(im)
	w.UsedBy = append(w.UsedBy, users[im.ID]...)
	return w, nil
}

func (d *Daemon) imageDelete(ctx context.Context, _ rpc.Caller, p api.ImageRef) (api.Empty, error) {
	if err := d.images.Delete(ctx, p.Name); err != nil {
		return api.Empty{}, err
	}
	// Templates of content the delete dropped go with it.
	_, err := d.vms.SweepTemplates(ctx, false)
	return api.Empty{}, err
}

func (d *Daemon) imagePull(ctx context.Context, _ rpc.Caller, p api.ImagePullParams) (api.Operation, error) {
	req := image.PullRequest{Ref: p.Name, Name: p.As, Insecure: p.Insecure, Platform: p.Platform}
	if a := p.Auth; a != nil {
		req.Auth = &oci.Auth{Username: a.Username, Password: a.Password, Auth: a.Auth, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken}
	}
	o, err := d.images.Pull(ctx, req)
	if err != nil {
		return api.Operation{}, err
	}
	return wireOp(o), nil
}

func wireImage(im model.Image) api.Image {
	return api.Image{
		Name: im.Name, ID: im.ID, KernelPath: im.KernelPath, InitrdPath: im.InitrdPath, RootfsPath: im.RootfsPath,
		Source: im.Source, Digest: im.Digest, SizeBytes: im.SizeBytes, CreatedAt: im.CreatedAt,
		Config: wireImageConfig(im.Config), Layers: im.Layers, UsedBy: []string{},
	}
}

func wireImageConfig(c *model.ImageConfig) *api.ImageConfig {
	if c == nil {
		return nil
	}
	return &api.ImageConfig{Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd, WorkingDir: c.WorkingDir, User: c.User}
}

// newImageName reads an upload's params: a valid name no image has yet.
func (d *Daemon) newImageName(ctx context.Context, raw json.RawMessage) (api.ImageImportParams, error) {
	var p api.ImageImportParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, model.Errorf(model.ErrInvalid, "invalid params: %v", err)
	}
	return p, d.images.NewName(ctx, p.Name)
}

// imageImport receives an image archive the CLI read as its user (the
// daemon opens no path a caller names), then starts the import and ends
// the stream with one line: the operation, or the error.
func (d *Daemon) imageImport(ctx context.Context, _ rpc.Caller, raw json.RawMessage) (any, func(rpc.Stream), error) {
	p, err := d.newImageName(ctx, raw)
	if err != nil {
		return nil, nil, err
	}
	f, err := d.images.Upload()
	if err != nil {
		return nil, nil, err
	}
	return api.Empty{}, func(c rpc.Stream) {
		defer c.Close()
		_, err := io.Copy(f, c)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(f.Name())
			answerStream(c, api.Operation{}, fmt.Errorf("receiving the archive: %w", err))
			return
		}
		o, err := d.images.Import(context.WithoutCancel(ctx), f.Name(), p.Name)
		answerStream(c, wireOp(o), err)
	}, nil
}

// answerStream ends an upload's stream with its one line: the operation
// the upload started, or the error.
func answerStream(c rpc.Stream, o api.Operation, err error) {
	res := api.ImageImportResult{Operation: &o}
	if err != nil {
		e := mapError(err)
		res = api.ImageImportResult{Error: &e.Message, Code: e.Code}
	}
	b, _ := json.Marshal(res)
	_, _ = c.Write(append(b, '\n'))
}

// imageRegister receives a kernel, a root filesystem and maybe modules,
// which the CLI read as its user, as a tar; then it checks and registers
// them in an operation.
func (d *Daemon) imageRegister(ctx context.Context, _ rpc.Caller, raw json.RawMessage) (any, func(rpc.Stream), error) {
	return d.receiveImage(ctx, raw, func(r io.Reader, dir, name string) (model.Operation, error) {
		if err := receiveRegistration(r, dir); err != nil {
			return model.Operation{}, err
		}
		return d.images.Register(context.WithoutCancel(ctx), dir, name)
	})
}

// imageLoad receives a bundle the CLI read as its user, checking every
// file against the bundle's manifest as it arrives, then registers it in
// an operation. A bundle that does not match leaves nothing behind.
func (d *Daemon) imageLoad(ctx context.Context, _ rpc.Caller, raw json.RawMessage) (any, func(rpc.Stream), error) {
	return d.receiveImage(ctx, raw, func(r io.Reader, dir, name string) (model.Operation, error) {
		b, err := image.ReceiveBundle(r, dir)
		if err != nil {
			return model.Operation{}, err
		}
		return d.images.Load(context.WithoutCancel(ctx), dir, name, b)
	})
}

// receiveImage is the shape of image.register and image.load: the name is
// checked before anything is read, the files are received into a register
// directory (removed if that fails), then an operation takes them over.
func (d *Daemon) receiveImage(ctx context.Context, raw json.RawMessage, receive func(r io.Reader, dir, name string) (model.Operation, error)) (any, func(rpc.Stream), error) {
	p, err := d.newImageName(ctx, raw)
	if err != nil {
		return nil, nil, err
	}
	dir, err := d.images.RegisterDir()
	if err != nil {
		return nil, nil, err
	}
	return api.Empty{}, func(c rpc.Stream) {
		defer c.Close()
		o, err := receive(c, dir, p.Name)
		if err != nil {
			_ = os.RemoveAll(dir)
		}
		answerStream(c, wireOp(o), err)
	}, nil
}

// imageExport sends an image as a bundle, framed so the client can tell a
// whole bundle from a broken one.
func (d *Daemon) imageExport(ctx context.Context, _ rpc.Caller, raw json.RawMessage) (any, func(rpc.Stream), error) {
	var p api.ImageImportParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, nil, model.Errorf(model.ErrInvalid, "invalid params: %v", err)
	}
	if _, err := d.images.Get(ctx, p.Name); err != nil {
		return nil, nil, err
	}
	return api.Empty{}, func(c rpc.Stream) {
		defer c.Close()
		cw := rpc.NewChunkWriter(c)
		_ = cw.End(d.images.Export(ctx, p.Name, cw))
	}, nil
}

// receiveRegistration writes the registration tar into dir: vmlinuz,
// rootfs.ext4, an initrd and files under modules/, nothing else (no
// links).
func receiveRegistration(r io.Reader, dir string) error {
	t, err := rootfs.Open(dir)
	if err != nil {
		return err
	}
	defer t.Close()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return t.Finish(rootfs.PutOptions{})
		}
		if err != nil {
			return fmt.Errorf("receiving the files: %w", err)
		}
		name := rootfs.Clean(hdr.Name)
		top, _, _ := strings.Cut(name, "/")
		ok := (name == image.RegisterKernel || name == image.RegisterRootfs || name == image.RegisterInitrd) && hdr.Typeflag == tar.TypeReg ||
			top == image.RegisterModules && (hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeDir)
		if !ok {
			continue
		}
		if err := t.Put(hdr, tr, rootfs.PutOptions{}); err != nil {
			return fmt.Errorf("receiving %s: %w", name, err)
		}
	}
}

func (d *Daemon) imagePrune(ctx context.Context, _ rpc.Caller, p api.ImagePruneParams) (api.ImagePruneResult, error) {
	r, err := d.images.Prune(ctx, p.All)
	if err == nil {
		_, err = d.vms.SweepTemplates(ctx, p.All)
	}
	if r.Images == nil {
		r.Images = []string{}
	}
	return api.ImagePruneResult{Images: r.Images, Layers: r.Blobs, Bytes: r.Bytes}, err
}

func (d *Daemon) imageCatalog(ctx context.Context, _ rpc.Caller, _ api.Empty) (api.ImageCatalog, error) {
	out := api.ImageCatalog{File: d.catalogPath, Entries: []api.CatalogEntry{}}
	if d.catalogErr != nil {
		out.Error = d.catalogErr.Error()
	}
	cat := d.images.Catalog()
	for _, n := range cat.Names() {
		e, _ := cat.Lookup(n)
		w := api.CatalogEntry{Name: n, Kind: "debian", Source: e.Source, OCI: e.OCI, Bundle: e.Bundle, SHA256: e.SHA256, User: e.User}
		switch {
		case e.OCI != "":
			w.Kind = "oci"
		case e.Bundle != "":
			w.Kind = "bundle"
		}
		if _, err := d.images.Get(ctx, n); err == nil {
			w.Local = true
		}
		out.Entries = append(out.Entries, w)
	}
	return out, nil
}
