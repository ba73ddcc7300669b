package daemon

import (
	"context"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/image"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/oci"
	"github.com/banger-dev/banger/internal/rpc"
)

func (d *Daemon) imageList(ctx context.Context, _ rpc.Caller, _ api.Empty) ([]api.Image, error) {
	ims, err := d.images.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, 0, len(ims))
	for _, im := range ims {
		out = append(out, wireImage(im))
	}
	return out, nil
}

func (d *Daemon) imageShow(ctx context.Context, _ rpc.Caller, p api.ImageRef) (api.Image, error) {
	im, err := d.images.Get(ctx, p.Name)
	if err != nil {
		return api.Image{}, err
	}
	return wireImage(im), nil
}

func (d *Daemon) imageDelete(ctx context.Context, _ rpc.Caller, p api.ImageRef) (api.Empty, error) {
	return api.Empty{}, d.images.Delete(ctx, p.Name)
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
		Name: im.Name, KernelPath: im.KernelPath, InitrdPath: im.InitrdPath, RootfsPath: im.RootfsPath,
		Source: im.Source, Digest: im.Digest, SizeBytes: im.SizeBytes, CreatedAt: im.CreatedAt,
		Config: wireImageConfig(im.Config),
	}
}

func wireImageConfig(c *model.ImageConfig) *api.ImageConfig {
	if c == nil {
		return nil
	}
	return &api.ImageConfig{Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd, WorkingDir: c.WorkingDir, User: c.User}
}
