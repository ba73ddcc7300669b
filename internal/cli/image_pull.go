package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/client"
)

func (a *app) imagePullCommand() *cobra.Command {
	var (
		detach bool
		p      api.ImagePullParams
	)
	cmd := &cobra.Command{
		Use:   "pull NAME|REFERENCE|BUNDLE",
		Short: "Fetch or build an image: a catalog name (debian-12), any OCI image reference, or a bundle",
		Long: "Builds a catalog image (debian-12, from Debian packages) or pulls an image from an\n" +
			"OCI registry (registry/repo:tag, @sha256:..., Docker Hub short names). Layers are\n" +
			"cached by digest and shared between images; pulling again follows a moved tag.\n" +
			"Credentials are your own docker/podman login (and credential helpers), read as you\n" +
			"and handed to the daemon for this pull only.\n\n" +
			"A bundle (from `banger image export`) is a file given as a path (./x.tar.zst),\n" +
			"- for standard input, or an https:// URL; a download that breaks off resumes on\n" +
			"the next pull. Every file is checked against the bundle's sha256s before the\n" +
			"image is registered, under the name the bundle gives or --name.",
		Example: "  banger image pull debian-12\n  banger image pull docker.io/library/alpine:3.20\n  banger image pull localhost:5000/team/app:1 --name app\n  banger image pull ./app.tar.zst\n  banger image pull https://example.com/images/app.tar.zst --name app",
		Args:    exactArgs(1, "one image name or reference"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			p.Name = args[0]
			var final api.Operation
			if e, ok := catalogEntry(ctx, c, args[0]); ok && e.Bundle != "" {
				as := p.As
				if as == "" {
					as = e.Name
				}
				final, err = a.pullBundle(ctx, c, e.Bundle, as, e.SHA256, p.Insecure, detach)
			} else if bundleKind(args[0]) != "" {
				final, err = a.pullBundle(ctx, c, args[0], p.As, "", p.Insecure, detach)
			} else {
				final, err = a.pullImage(ctx, c, p, detach)
			}
			if err != nil || detach {
				return err
			}
			if err := opErr(final); err != nil {
				return err
			}
			fmt.Fprintf(a.streams.Out, "image %s ready\n", final.Target)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&detach, "detach", "d", false, "print the operation ID and return at once")
	f.StringVar(&p.As, "name", "", "the local name of a pulled image (default: the reference as given)")
	f.StringVar(&p.Platform, "platform", "", "os/arch[/variant] of a multi-platform image (default linux/amd64)")
	f.BoolVar(&p.Insecure, "insecure", false, "allow plain HTTP to a registry or bundle URL that is not on loopback")
	return cmd
}

// pullImage starts a pull, with the caller's own credential for the
// registry of an OCI reference, and waits for it unless detach.
func (a *app) pullImage(ctx context.Context, c *client.Client, p api.ImagePullParams, detach bool) (api.Operation, error) {
	ref := p.Name
	if !isOCIRef(ref) {
		ref = catalogRef(ctx, c, p.Name) // a catalog name for an OCI image
	}
	if ref != "" {
		auth, err := registryAuth(ref, p.Insecure)
		if err != nil {
			return api.Operation{}, err
		}
		p.Auth = auth
	}
	o, err := c.ImagePull(ctx, p)
	if err != nil {
		return api.Operation{}, err
	}
	if detach {
		fmt.Fprintln(a.streams.Out, o.ID)
		return o, nil
	}
	return a.waitOp(ctx, c, o, "pulling image "+p.Name)
}

// catalogRef is the OCI reference of a catalog entry ("" for none).
func catalogRef(ctx context.Context, c *client.Client, name string) string {
	e, _ := catalogEntry(ctx, c, name)
	return e.OCI
}

// catalogEntry is the catalog's entry for name, if it has one.
func catalogEntry(ctx context.Context, c *client.Client, name string) (api.CatalogEntry, bool) {
	cat, err := c.ImageCatalog(ctx)
	if err != nil {
		return api.CatalogEntry{}, false
	}
	for _, e := range cat.Entries {
		if e.Name == name {
			return e, true
		}
	}
	return api.CatalogEntry{}, false
}

// ensureImage pulls an OCI reference (or a catalog name for one) that is
// not local yet, as docker run does, with the caller's credentials; other
// catalog names are built by the daemon itself.
func (a *app) ensureImage(ctx context.Context, c *client.Client, ref string) error {
	if ref == "" {
		return nil
	}
	var entry api.CatalogEntry
	if !isOCIRef(ref) {
		if entry, _ = catalogEntry(ctx, c, ref); entry.OCI == "" && entry.Bundle == "" {
			return nil // built by the daemon, or not an image at all: it says
		}
	}
	if _, err := c.ImageShow(ctx, ref); err == nil {
		return nil
	} else if !isNotFound(err) {
		return err
	}
	var final api.Operation
	var err error
	if entry.Bundle != "" {
		final, err = a.pullBundle(ctx, c, entry.Bundle, ref, entry.SHA256, false, false)
	} else {
		final, err = a.pullImage(ctx, c, api.ImagePullParams{Name: ref}, false)
	}
	if err != nil {
		return err
	}
	return opErr(final)
}

// registryAuth reads the invoking user's credential for ref's registry
// (docker and podman login files, credential helpers). None is fine: the
// pull goes anonymous.
func registryAuth(ref string, insecure bool) (*api.RegistryAuth, error) {
	opts := []name.Option{name.WeakValidation}
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	authr, err := authn.DefaultKeychain.Resolve(r.Context().Registry)
	if err != nil {
		return nil, fmt.Errorf("reading your registry credentials for %s: %w", r.Context().RegistryStr(), err)
	}
	cfg, err := authr.Authorization()
	if err != nil {
		return nil, fmt.Errorf("reading your registry credentials for %s: %w", r.Context().RegistryStr(), err)
	}
	if *cfg == (authn.AuthConfig{}) {
		return nil, nil
	}
	return &api.RegistryAuth{Username: cfg.Username, Password: cfg.Password, Auth: cfg.Auth,
		IdentityToken: cfg.IdentityToken, RegistryToken: cfg.RegistryToken}, nil
}

// isOCIRef is model.IsImageReference on this side of the socket (the CLI
// speaks api, not model): a repository path, a tag or a digest.
func isOCIRef(ref string) bool { return strings.ContainsAny(ref, "/:@") }
