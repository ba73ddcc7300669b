package cli

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/archive"
)

func (a *app) imageImportCommand() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "import FILE|DIR|- [--name NAME]",
		Short: "Import an image from a docker save / podman save tarball or an OCI layout",
		Long: "Imports the image in a `docker save` or `podman save` tarball, or in an OCI image\n" +
			"layout (a directory, or a tar of one; `-` reads a tar from stdin). banger reads the\n" +
			"file as you and streams it to the daemon, which never opens a path you name. The\n" +
			"name defaults to the archive's own tag.",
		Example: "  docker save alpine:3.20 -o alpine.tar && banger image import alpine.tar\n" +
			"  skopeo copy docker://alpine:3.20 oci:alpine-layout && banger image import alpine-layout --name alpine",
		Args: exactArgs(1, "one archive file, layout directory or -"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			src := args[0]
			if name == "" {
				n, err := archiveTag(src)
				if err != nil {
					return err
				}
				if n == "" {
					return usagef(cmd, "%s names no image tag; give one with --name", src)
				}
				name = n
			}
			r, wait, err := a.archiveStream(ctx, src)
			if err != nil {
				return err
			}
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			o, err := c.ImageImport(ctx, r, name)
			if werr := wait(); err == nil && werr != nil {
				err = werr
			}
			if err != nil {
				return err
			}
			final, err := a.waitOp(ctx, c, o, "importing image "+name)
			if err != nil {
				return err
			}
			if err := opErr(final); err != nil {
				return err
			}
			fmt.Fprintf(a.streams.Out, "image %s ready\n", name)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the image's local name (default: the archive's tag)")
	return cmd
}

// archiveStream opens src as the invoking user: a file as it is, stdin for
// "-", a layout directory packed as a tar on the fly.
func (a *app) archiveStream(ctx context.Context, src string) (io.Reader, func() error, error) {
	if src == "-" {
		return a.streams.In, func() error { return nil }, nil
	}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, nil, fmt.Errorf("opening %s: %w", src, err)
	}
	if !fi.IsDir() {
		f, err := os.Open(src)
		if err != nil {
			return nil, nil, fmt.Errorf("opening %s: %w", src, err)
		}
		return f, f.Close, nil
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := archive.Pack(ctx, pw, src, ".")
		pw.CloseWithError(err)
		done <- err
	}()
	return pr, func() error { pr.Close(); return <-done }, nil
}

// archiveTag is the tag an archive gives its image: a docker save
// manifest's first RepoTag, or an OCI layout's ref.name annotation ("" for
// none, or for stdin, which is read once).
func archiveTag(src string) (string, error) {
	if src == "-" {
		return "", nil
	}
	fi, err := os.Stat(src)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", src, err)
	}
	if fi.IsDir() {
		b, err := os.ReadFile(filepath.Join(src, "index.json"))
		if err != nil {
			return "", fmt.Errorf("%s is not an OCI layout: %w", src, err)
		}
		return layoutTag(b), nil
	}
	f, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", src, err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", src, err)
		}
		switch strings.TrimPrefix(hdr.Name, "./") {
		case "manifest.json":
			var m []struct{ RepoTags []string }
			if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&m); err != nil || len(m) == 0 || len(m[0].RepoTags) == 0 {
				return "", nil
			}
			return m[0].RepoTags[0], nil
		case "index.json":
			b, _ := io.ReadAll(io.LimitReader(tr, 1<<20))
			return layoutTag(b), nil
		}
	}
}

func layoutTag(index []byte) string {
	var idx struct {
		Manifests []struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if json.Unmarshal(index, &idx) != nil || len(idx.Manifests) != 1 {
		return ""
	}
	return idx.Manifests[0].Annotations["org.opencontainers.image.ref.name"]
}
