// Command image measures `banger image pull` of a multi-layer image of
// 300+ MB from a local registry (Debian's docker-registry, run by the
// benchmark on the loopback of a network namespace it makes): a cold pull
// (download, apply, ext4, publish) against the same content done by hand
// in the same run (download each layer blob, `tar -xzf` them in order,
// `mkfs.ext4 -d` with banger's geometry), and a warm re-pull of an
// unchanged image. The content is the debian-12 rootfs, read out of its
// ext4 with debugfs and pushed as three gzip layers.
//
//	CGO_ENABLED=0 go build -o /tmp/bin/ ./cmd/... && go run ./bench/image -bin /tmp/bin -n 3
package main

import (
	"archive/tar"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/banger-dev/banger/bench/benchns"
	"github.com/banger-dev/banger/internal/host/run"
	"github.com/banger-dev/banger/internal/rootfs"
)

const registry = "127.0.0.1:5000"

func main() {
	bin := flag.String("bin", "/usr/local/bin", "directory holding banger, bangerd and banger-agent")
	cache := flag.String("image-cache", "/var/cache/banger-test", "image cache dir (the debian-12 build is reused)")
	n := flag.Int("n", 3, "runs of each")
	flag.Parse()
	var err error
	if !benchns.Inside() {
		err = benchns.Run("bgimage")
	} else {
		err = measure(*bin, *cache, *n)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/image:", err)
		os.Exit(1)
	}
}

func measure(bin, cache string, n int) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("/var/tmp", "bgimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	stop, err := startRegistry(work)
	if err != nil {
		return err
	}
	defer stop()

	imgs, _ := filepath.Glob(filepath.Join(cache, "*", "rootfs.ext4"))
	if len(imgs) == 0 {
		return fmt.Errorf("no debian-12 rootfs in %s: run the e2e tests or bench/boot once", cache)
	}
	root := filepath.Join(work, "content")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	if _, err := run.Output(ctx, []string{"debugfs", "-R", "rdump / " + root, imgs[0]}); err != nil {
		return err
	}
	layers, size, err := pushContent(root, work)
	if err != nil {
		return err
	}
	os.RemoveAll(root)
	ref := registry + "/bench:1"
	fmt.Printf("image: %s, %d layers, %.0f MB uncompressed\n", ref, len(layers), float64(size)/1e6)

	b, err := benchns.NewBanger(bin, "bgimage", fmt.Sprintf("image_cache_dir = %q\n", cache))
	if err != nil {
		return err
	}
	defer b.Close()
	if _, err := b.Run("image", "pull", "debian-12"); err != nil { // the kernel OCI images boot on
		return err
	}

	var cold, manual, warm []time.Duration
	for i := 0; i < n; i++ {
		_, _ = b.Run("image", "delete", "bench")
		if err := os.RemoveAll(filepath.Join(b.State, "oci")); err != nil {
			return err
		}
		start := time.Now()
		if out, err := b.Run("image", "pull", ref, "--name", "bench"); err != nil {
			return fmt.Errorf("pull: %w: %s", err, out)
		}
		cold = append(cold, time.Since(start))

		start = time.Now()
		if _, err := b.Run("image", "pull", ref, "--name", "bench"); err != nil {
			return err
		}
		warm = append(warm, time.Since(start))

		d, err := byHand(ctx, work, layers)
		if err != nil {
			return err
		}
		manual = append(manual, d)
	}
	if log, err := os.ReadFile(filepath.Join(b.State, "bangerd.log")); err == nil {
		for _, l := range strings.Split(string(log), "\n") {
			if strings.Contains(l, "image written") || strings.Contains(l, "image pulled") {
				fmt.Println("  " + l[strings.Index(l, "msg="):])
			}
		}
	}
	c, m := benchns.Median(cold), benchns.Median(manual)
	fmt.Printf("cold pull (download, apply, ext4, publish): median %.2f s  runs %s\n", c.Seconds(), benchns.List(cold))
	fmt.Printf("by hand (download, tar -xzf in order, mkfs.ext4 -d): median %.2f s  runs %s\n", m.Seconds(), benchns.List(manual))
	fmt.Printf("ratio: %.2f\n", c.Seconds()/m.Seconds())
	fmt.Printf("warm re-pull of an unchanged image: median %d ms  runs %s\n", benchns.Median(warm).Milliseconds(), benchns.List(warm))
	return nil
}

// byHand does what the pull does with standard tools: each layer blob
// fetched over HTTP, unpacked with tar in order, the tree written with
// mkfs.ext4 -d (banger's geometry).
func byHand(ctx context.Context, work string, layers []v1.Hash) (time.Duration, error) {
	dir := filepath.Join(work, "byhand")
	tree := filepath.Join(dir, "tree")
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return 0, err
	}
	start := time.Now()
	for i, d := range layers {
		blob := filepath.Join(dir, fmt.Sprintf("layer%d.tar.gz", i))
		if err := download(fmt.Sprintf("http://%s/v2/bench/blobs/%s", registry, d), blob); err != nil {
			return 0, err
		}
		if _, err := run.Output(ctx, []string{"tar", "-xzf", blob, "-C", tree, "--numeric-owner", "--same-owner", "-p", "--xattrs"}); err != nil {
			return 0, err
		}
	}
	if err := rootfs.WriteExt4(ctx, tree, filepath.Join(dir, "rootfs.ext4"), rootfs.Ext4Options{Label: "banger-root"}); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func download(url, dst string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startRegistry runs docker-registry on the namespace's loopback.
func startRegistry(work string) (func(), error) {
	bin, err := run.LookPath("docker-registry")
	if err != nil {
		return nil, fmt.Errorf("docker-registry is not installed: apt-get install docker-registry")
	}
	cfg := filepath.Join(work, "registry.yml")
	body := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(work, "registry"), registry)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(work, "registry.log"))
	if err != nil {
		return nil, err
	}
	p, err := run.Spawn([]string{bin, "serve", cfg}, nil, logf, logf)
	logf.Close()
	if err != nil {
		return nil, err
	}
	stop := func() { _ = p.Signal(syscall.SIGTERM); _, _ = p.Wait() }
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + registry + "/v2/")
		if err == nil {
			resp.Body.Close()
			return stop, nil
		}
		if i > 100 {
			stop()
			return nil, fmt.Errorf("the registry does not answer: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pushContent pushes the tree at root as three layers (usr/lib, usr/share,
// the rest) and returns the layers' digests and the content's size.
func pushContent(root, work string) ([]v1.Hash, int64, error) {
	groups := []func(rel string) bool{
		func(rel string) bool {
			return !strings.HasPrefix(rel, "usr/lib") && !strings.HasPrefix(rel, "usr/share")
		},
		func(rel string) bool { return strings.HasPrefix(rel, "usr/lib") },
		func(rel string) bool { return strings.HasPrefix(rel, "usr/share") },
	}
	img := empty.Image
	var total int64
	for i, in := range groups {
		path := filepath.Join(work, fmt.Sprintf("layer%d.tar", i))
		n, err := writeLayer(root, path, in)
		if err != nil {
			return nil, 0, err
		}
		total += n
		l, err := tarball.LayerFromFile(path)
		if err != nil {
			return nil, 0, err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return nil, 0, err
		}
	}
	ref, err := name.ParseReference(registry + "/bench:1")
	if err != nil {
		return nil, 0, err
	}
	if err := remote.Write(ref, img); err != nil {
		return nil, 0, err
	}
	ls, err := img.Layers()
	if err != nil {
		return nil, 0, err
	}
	var digests []v1.Hash
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			return nil, 0, err
		}
		digests = append(digests, d)
	}
	return digests, total, nil
}

// writeLayer writes the entries of root that in selects (and every
// directory, so each layer stands alone) as a tar.
func writeLayer(root, path string, in func(string) bool) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	var total int64
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if !fi.IsDir() && !in(rel) {
			return nil
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		} else if !fi.Mode().IsRegular() && !fi.IsDir() {
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name, hdr.Uname, hdr.Gname = rel, "", ""
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			n, err := io.Copy(tw, src)
			total += n
			return err
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return total, tw.Close()
}
