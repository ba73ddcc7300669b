package oci

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/banger-dev/banger/internal/rootfs"
)

// pushImage pushes an image of the given layers (uncompressed tars) to an
// in-process registry and returns its reference.
func pushImage(t *testing.T, host, repo string, cfg v1.Config, layers ...[]byte) string {
	t.Helper()
	img := empty.Image
	for _, l := range layers {
		data := l
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return nopCloser{bytes.NewReader(data)}, nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			t.Fatal(err)
		}
	}
	img, err := mutate.Config(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return ref.String()
}

func TestPullFlattenAndCache(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	base := layer(t, dir("etc/"), file("etc/os-release", "ID=test\n"), file("etc/gone", "x"), symlink("bin", "usr/bin"))
	top := layer(t, file("etc/.wh.gone", ""), dir("usr/bin/"), file("bin/tool", "#!/bin/sh\n"))
	ref := pushImage(t, host, "test/img:1", v1.Config{Env: []string{"A=1"}, Entrypoint: []string{"/bin/tool"}, WorkingDir: "/w"}, base, top)

	c := Cache{Dir: t.TempDir()}
	var reports []Progress
	im, err := c.Pull(context.Background(), ref, PullOptions{Progress: func(p Progress) { reports = append(reports, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Layers) != 2 || im.Downloaded == 0 || !strings.HasPrefix(im.Digest, "sha256:") {
		t.Fatalf("pulled %+v", im)
	}
	if im.Config.Config.WorkingDir != "/w" || im.Config.Config.Entrypoint[0] != "/bin/tool" {
		t.Fatalf("config: %+v", im.Config.Config)
	}
	// Both layers are named, at 0 bytes, before the first is fetched.
	if len(reports) < 2 || reports[0].Digest != im.Layers[0].Digest.String() || reports[1].Digest != im.Layers[1].Digest.String() ||
		reports[0].LayerDone != 0 || reports[1].LayerDone != 0 || reports[1].LayerSize != im.Layers[1].Size || reports[0].Layers != 2 {
		t.Fatalf("progress reports %+v", reports)
	}
	dirPath := filepath.Join(t.TempDir(), "tree")
	_ = os.Mkdir(dirPath, 0o755)
	tree, err := rootfs.Open(dirPath)
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	if err := c.Flatten(context.Background(), im, tree); err != nil {
		t.Fatal(err)
	}
	wantTree(t, dirPath, "bin -> usr/bin", "etc/", "etc/os-release = ID=test\n", "usr/", "usr/bin/", "usr/bin/tool = #!/bin/sh\n")

	// Every layer cached: the second pull downloads nothing.
	again, err := c.Pull(context.Background(), ref, PullOptions{})
	if err != nil || again.Downloaded != 0 || again.Digest != im.Digest {
		t.Fatalf("second pull: downloaded %d, %v", again.Downloaded, err)
	}
	// A layer shared with another image is not fetched again either.
	other := pushImage(t, host, "test/other:1", v1.Config{}, base, layer(t, file("new", "n")))
	o, err := c.Pull(context.Background(), other, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if o.Downloaded == 0 || o.Downloaded >= im.Downloaded+int64(len(base)) {
		t.Errorf("the shared base layer was fetched again: %d bytes", o.Downloaded)
	}
}

func TestPlainHTTPOnlyForLoopback(t *testing.T) {
	c := Cache{Dir: t.TempDir()}
	// Nothing is dialled: HTTPS goes to a transport that refuses it, and
	// the guard refuses the fallback to plain HTTP.
	_, err := c.Pull(context.Background(), "10.0.0.1:5000/x:1", PullOptions{Transport: noNetwork{}})
	if err == nil || !strings.Contains(err.Error(), "plain HTTP") {
		t.Fatalf("a private-address registry over plain HTTP: %v", err)
	}
}

// noNetwork fails every request without dialling anything.
type noNetwork struct{}

func (noNetwork) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("no network in this test")
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
