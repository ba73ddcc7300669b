package oci

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/banger-dev/banger/internal/rootfs"
)

// ErrNotAnImageArchive is a file that is neither a `docker save` tarball
// nor an OCI layout.
var ErrNotAnImageArchive = errors.New("not an image archive: expected a `docker save`/`podman save` tarball (with manifest.json) or an OCI layout (with oci-layout and index.json)")

// ReadArchive opens the image in the archive at path: a `docker save` or
// `podman save` tarball, or an OCI layout packed as a tar, which is
// unpacked into scratch (an empty directory) through a rootfs.Tree. An
// archive of several images is refused: name one with --name after
// splitting it.
func ReadArchive(ctx context.Context, path, scratch string) (v1.Image, error) {
	kind, err := archiveKind(path)
	if err != nil {
		return nil, err
	}
	if kind == "docker" {
		img, err := tarball.ImageFromPath(path, nil)
		if err != nil {
			return nil, fmt.Errorf("reading the docker archive: %w", err)
		}
		return img, nil
	}
	if err := unpackTar(ctx, path, scratch); err != nil {
		return nil, fmt.Errorf("unpacking the OCI layout: %w", err)
	}
	idx, err := layout.ImageIndexFromPath(scratch)
	if err != nil {
		return nil, fmt.Errorf("reading the OCI layout: %w", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading the OCI layout's index: %w", err)
	}
	var picked []v1.Descriptor
	for _, d := range im.Manifests {
		if d.MediaType.IsImage() && (d.Platform == nil || d.Platform.OS == "linux" && d.Platform.Architecture == "amd64") {
			picked = append(picked, d)
		}
	}
	if len(picked) != 1 {
		return nil, fmt.Errorf("the OCI layout holds %d linux/amd64 images; banger imports one", len(picked))
	}
	img, err := idx.Image(picked[0].Digest)
	if err != nil {
		return nil, fmt.Errorf("reading the OCI layout's image: %w", err)
	}
	return img, nil
}

// archiveKind looks at the tar's member names: "docker" or "oci".
func archiveKind(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var layoutFile, index bool
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("%w (%w)", ErrNotAnImageArchive, err)
		}
		switch rootfs.Clean(hdr.Name) {
		case "manifest.json":
			return "docker", nil
		case "oci-layout":
			layoutFile = true
		case "index.json":
			index = true
		}
	}
	if layoutFile && index {
		return "oci", nil
	}
	return "", ErrNotAnImageArchive
}

// unpackTar writes the tar at path into dir, confined to it.
func unpackTar(ctx context.Context, path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	t, err := rootfs.Open(dir)
	if err != nil {
		return err
	}
	defer t.Close()
	tr := tar.NewReader(f)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeDir, tar.TypeReg:
			// A layout is directories and files; nothing else is needed.
			if err := t.Put(hdr, tr, rootfs.PutOptions{}); err != nil {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
		}
	}
	return t.Finish(rootfs.PutOptions{})
}
