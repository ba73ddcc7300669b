package oci

import (
	"bufio"

	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/banger-dev/banger/internal/rootfs"
)

// Auth is a registry credential for one pull, resolved by the CLI from
// the invoking user's docker or podman login; the daemon never stores it.
type Auth = authn.AuthConfig

// Cache keeps layer blobs by digest (<dir>/sha256/<hex>, as pulled,
// compressed), shared between images.
type Cache struct{ Dir string }

func (c Cache) blobPath(d v1.Hash) string { return filepath.Join(c.Dir, d.Algorithm, d.Hex) }

// Has reports whether the blob is cached.
func (c Cache) Has(d v1.Hash) bool {
	_, err := os.Stat(c.blobPath(d))
	return err == nil
}

// PullOptions steer a pull.
type PullOptions struct {
	Auth *Auth
	// Insecure allows plain HTTP to a registry that is not on loopback.
	Insecure bool
	// Platform is os/arch[/variant] (default linux/amd64).
	Platform string
	// Progress is told the bytes of each layer as they arrive.
	Progress func(Progress)
	// OnLayers is told the image's layer digests once the manifest is
	// read, before anything is fetched: the caller pins them against a
	// prune.
	OnLayers func(digests []string)
	// Transport replaces the HTTP transport (tests).
	Transport http.RoundTripper
}

// Progress is where a pull is.
type Progress struct {
	Layer, Layers int // 1-based layer being fetched, of how many
	Digest        string
	// LayerDone and LayerSize are that layer's bytes.
	LayerDone, LayerSize int64
	Done, Total          int64 // bytes of all layers to download
}

// Image is a pulled image: its manifest digest, config and cached layers.
type Image struct {
	Ref    string
	Digest string
	Config v1.ConfigFile
	// Layers are the cached blobs, oldest first.
	Layers []Layer
	// Downloaded is how many bytes this pull fetched (0 when all layers
	// were cached).
	Downloaded int64
}

// Digests are the image's layer digests, oldest first.
func (im Image) Digests() []string {
	out := make([]string, len(im.Layers))
	for i, l := range im.Layers {
		out[i] = l.Digest.String()
	}
	return out
}

// Blobs lists the cached blobs by digest, with their sizes.
func (c Cache) Blobs() (map[string]int64, error) {
	entries, err := os.ReadDir(filepath.Join(c.Dir, "sha256"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue // a download in flight
		}
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			out["sha256:"+e.Name()] = fi.Size()
		}
	}
	return out, nil
}

// Remove deletes a cached blob.
func (c Cache) Remove(digest string) error {
	h, err := v1.NewHash(digest)
	if err != nil {
		return err
	}
	return os.Remove(c.blobPath(h))
}

// Layer is one cached layer blob.
type Layer struct {
	Digest    v1.Hash
	MediaType string
	Size      int64
}

// ErrInsecure is a registry that would be reached over plain HTTP.
var ErrInsecure = errors.New("plain HTTP is only used for loopback registries or with --insecure")

// Pull fetches ref's manifest and config and every layer not in the
// cache, each checked against its digest before it is kept.
func (c Cache) Pull(ctx context.Context, ref string, o PullOptions) (Image, error) {
	r, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return Image{}, fmt.Errorf("image reference %q: %w", ref, err)
	}
	if o.Insecure {
		if r, err = name.ParseReference(ref, name.WeakValidation, name.Insecure); err != nil {
			return Image{}, fmt.Errorf("image reference %q: %w", ref, err)
		}
	}
	plat := v1.Platform{OS: "linux", Architecture: "amd64"}
	if o.Platform != "" {
		p, err := v1.ParsePlatform(o.Platform)
		if err != nil {
			return Image{}, fmt.Errorf("platform %q: %w", o.Platform, err)
		}
		plat = *p
	}
	base := o.Transport
	if base == nil {
		base = remote.DefaultTransport
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithPlatform(plat),
		remote.WithTransport(httpGuard{base: base, insecure: o.Insecure})}
	if o.Auth != nil {
		opts = append(opts, remote.WithAuth(authn.FromConfig(*o.Auth)))
	} else {
		opts = append(opts, remote.WithAuth(authn.Anonymous))
	}
	img, err := remote.Image(r, opts...)
	if err != nil {
		return Image{}, fmt.Errorf("fetching %s: %w", ref, err)
	}
	return c.Store(ctx, r.Name(), img, o.Progress, o.OnLayers)
}

// Store reads img's manifest and config and copies every layer not in
// the cache into it, each checked against its digest before it is kept.
// ref names the image in errors and in the result.
func (c Cache) Store(ctx context.Context, ref string, img v1.Image, progress func(Progress), onLayers func([]string)) (Image, error) {
	digest, err := img.Digest()
	if err != nil {
		return Image{}, fmt.Errorf("reading %s's manifest: %w", ref, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return Image{}, fmt.Errorf("reading %s's config: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return Image{}, fmt.Errorf("reading %s's layers: %w", ref, err)
	}
	out := Image{Ref: ref, Digest: digest.String(), Config: *cfg}
	var total int64
	var missing []int
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return Image{}, err
		}
		size, err := l.Size()
		if err != nil {
			return Image{}, err
		}
		mt, _ := l.MediaType()
		out.Layers = append(out.Layers, Layer{Digest: d, MediaType: string(mt), Size: size})
	}
	if onLayers != nil {
		onLayers(out.Digests())
	}
	for i, l := range out.Layers {
		if !c.Has(l.Digest) {
			total += l.Size
			missing = append(missing, i)
		}
	}
	if progress != nil {
		// Every layer to fetch is named before the first byte, so a
		// display can show them all from the start.
		for n, i := range missing {
			l := out.Layers[i]
			progress(Progress{Layer: n + 1, Layers: len(missing), Digest: l.Digest.String(), LayerSize: l.Size, Total: total})
		}
	}
	for n, i := range missing {
		l := out.Layers[i]
		report := func(done int64) {
			if progress != nil {
				progress(Progress{Layer: n + 1, Layers: len(missing), Digest: l.Digest.String(), LayerDone: done, LayerSize: l.Size, Done: out.Downloaded + done, Total: total})
			}
		}
		got, err := c.fetch(ctx, layers[i], l, report)
		out.Downloaded += got
		if err != nil {
			return Image{}, fmt.Errorf("fetching layer %s of %s: %w", l.Digest, ref, err)
		}
	}
	return out, nil
}

// fetch copies one layer blob into the cache under a temporary name,
// checks its digest, and renames it into place.
func (c Cache) fetch(ctx context.Context, layer v1.Layer, l Layer, report func(int64)) (int64, error) {
	if l.Digest.Algorithm != "sha256" {
		return 0, fmt.Errorf("unsupported digest algorithm %s", l.Digest.Algorithm)
	}
	rc, err := layer.Compressed()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	dir := filepath.Join(c.Dir, "sha256")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(dir, ".partial-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	cw := &countWriter{report: report}
	n, err := io.Copy(io.MultiWriter(tmp, h, cw), ctxReader{ctx, rc})
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != l.Digest.Hex {
		return n, fmt.Errorf("the registry sent content with digest sha256:%s", got)
	}
	report(n) // the last bytes, which countWriter reports only by the 256 KiB
	return n, os.Rename(tmp.Name(), c.blobPath(l.Digest))
}

// Flatten applies the image's cached layers, oldest first, to tree.
func (c Cache) Flatten(ctx context.Context, im Image, tree *rootfs.Tree) error {
	for i, l := range im.Layers {
		if err := c.applyBlob(ctx, l, tree); err != nil {
			return fmt.Errorf("layer %d (%s): %w", i+1, l.Digest, err)
		}
	}
	return nil
}

func (c Cache) applyBlob(ctx context.Context, l Layer, tree *rootfs.Tree) error {
	f, err := os.Open(c.blobPath(l.Digest))
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := Decompress(f)
	if err != nil {
		return err
	}
	defer r.Close()
	ra := readAhead(r)
	defer ra.Close()
	_, err = Apply(ctx, tree, ra)
	return err
}

// readAhead decompresses on a goroutine of its own, a few chunks ahead of
// the reader: decompression and the file system calls of Apply then run
// on two cores, as `tar -xz` runs gzip beside tar.
func readAhead(r io.Reader) io.ReadCloser {
	const chunk, depth = 1 << 20, 8
	ra := &aheadReader{chunks: make(chan []byte, depth), stop: make(chan struct{})}
	go func() {
		defer close(ra.chunks)
		for {
			buf := make([]byte, chunk)
			n, err := io.ReadFull(r, buf)
			if n > 0 {
				select {
				case ra.chunks <- buf[:n]:
				case <-ra.stop:
					return
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					ra.err = err
				}
				return
			}
		}
	}()
	return ra
}

type aheadReader struct {
	chunks chan []byte
	stop   chan struct{}
	cur    []byte
	err    error // set by the goroutine before it closes chunks
	once   sync.Once
}

func (a *aheadReader) Read(p []byte) (int, error) {
	for len(a.cur) == 0 {
		c, ok := <-a.chunks
		if !ok {
			if a.err != nil {
				return 0, a.err
			}
			return 0, io.EOF
		}
		a.cur = c
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}

// Close stops the goroutine and waits for it to let go of the source.
func (a *aheadReader) Close() error {
	a.once.Do(func() { close(a.stop) })
	for range a.chunks {
	}
	return nil
}

// Decompress reads a layer blob as tar, whatever its compression (gzip,
// zstd or none), known by its first bytes rather than a media type a
// registry may get wrong.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, _ := br.Peek(4)
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("reading a gzip layer: %w", err)
		}
		return zr, nil
	case len(magic) == 4 && string(magic) == "\x28\xb5\x2f\xfd":
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("reading a zstd layer: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

// httpGuard refuses plain HTTP to registries off loopback unless the pull
// is --insecure (go-containerregistry also falls back to HTTP for private
// addresses, which docker does not).
type httpGuard struct {
	base     http.RoundTripper
	insecure bool
}

func (g httpGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.insecure && !isLoopback(req.URL.Hostname()) {
		return nil, fmt.Errorf("registry %s: %w", req.URL.Host, ErrInsecure)
	}
	return g.base.RoundTrip(req)
}

func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type countWriter struct {
	n      int64
	report func(int64)
	last   int64
}

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if w.n-w.last >= 256<<10 {
		w.last = w.n
		w.report(w.n)
	}
	return len(p), nil
}

// ContextReader reads r until ctx ends, so a long copy stops with it.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
