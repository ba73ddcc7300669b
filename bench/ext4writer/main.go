// Command ext4writer measures the two ways to turn a root filesystem into
// an ext4 image without mounting anything, on the same content in the
// same run: banger's (the tree staged on the host, then `mkfs.ext4 -d`)
// and a streaming tar→ext4 writer (hcsshim's tar2ext4, which writes the
// image straight from the tar, no staging). Two contents: the debian-12
// rootfs (read out of its ext4 with debugfs), and a synthetic one with a
// directory of 20,000 entries and a 1 GiB sparse file.
//
//	go run ./bench/ext4writer -n 3
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/Microsoft/hcsshim/ext4/tar2ext4"

	"github.com/banger-dev/banger/bench/benchns"
	"github.com/banger-dev/banger/internal/host/run"
	"github.com/banger-dev/banger/internal/rootfs"
)

func main() {
	cache := flag.String("image-cache", "/var/cache/banger-test", "image cache dir holding the debian-12 build")
	n := flag.Int("n", 3, "runs of each")
	flag.Parse()
	if err := measure(*cache, *n); err != nil {
		fmt.Fprintln(os.Stderr, "bench/ext4writer:", err)
		os.Exit(1)
	}
}

func measure(cache string, n int) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("/var/tmp", "bgext4-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	imgs, _ := filepath.Glob(filepath.Join(cache, "*", "rootfs.ext4"))
	if len(imgs) == 0 {
		return fmt.Errorf("no debian-12 rootfs in %s: run the e2e tests once", cache)
	}
	deb := filepath.Join(work, "debian")
	_ = os.Mkdir(deb, 0o755)
	if _, err := run.Output(ctx, []string{"debugfs", "-R", "rdump / " + deb, imgs[0]}); err != nil {
		return err
	}
	synth := filepath.Join(work, "synthetic")
	if err := makeSynthetic(synth); err != nil {
		return err
	}
	for _, c := range []struct{ name, dir string }{{"debian-12 rootfs", deb}, {"20,000-entry directory + 1 GiB sparse file", synth}} {
		tarPath := filepath.Join(work, "content.tar")
		if err := tarTree(c.dir, tarPath); err != nil {
			return err
		}
		var stage, mkfs, stream []time.Duration
		var mkfsBlocks, streamBlocks int64
		for i := 0; i < n; i++ {
			tree := filepath.Join(work, "tree")
			start := time.Now()
			_ = os.Mkdir(tree, 0o755)
			if _, err := run.Output(ctx, []string{"tar", "-xf", tarPath, "-C", tree, "--numeric-owner", "-p", "--xattrs"}); err != nil {
				return err
			}
			stage = append(stage, time.Since(start))
			img := filepath.Join(work, "mkfs.ext4")
			start = time.Now()
			if err := rootfs.WriteExt4(ctx, tree, img, rootfs.Ext4Options{Label: "banger-root"}); err != nil {
				return err
			}
			mkfs = append(mkfs, time.Since(start))
			mkfsBlocks = allocated(img)
			os.RemoveAll(tree)
			os.Remove(img)

			img = filepath.Join(work, "tar2ext4.ext4")
			start = time.Now()
			if err := streamWrite(tarPath, img); err != nil {
				return err
			}
			stream = append(stream, time.Since(start))
			streamBlocks = allocated(img)
			if out, err := run.Output(ctx, []string{"e2fsck", "-fn", img}); err != nil && i == 0 {
				fmt.Printf("  tar2ext4 image is not e2fsck-clean: %v %s\n", err, out)
			}
			os.Remove(img)
		}
		s, m, w := benchns.Median(stage), benchns.Median(mkfs), benchns.Median(stream)
		fmt.Printf("%s:\n", c.name)
		fmt.Printf("  stage the tree (tar -x):          median %.2f s  runs %s\n", s.Seconds(), benchns.List(stage))
		fmt.Printf("  mkfs.ext4 -d of the tree:         median %.2f s  runs %s  (%d MiB allocated)\n", m.Seconds(), benchns.List(mkfs), mkfsBlocks>>20)
		fmt.Printf("  tar2ext4 straight from the tar:   median %.2f s  runs %s  (%d MiB allocated)\n", w.Seconds(), benchns.List(stream), streamBlocks>>20)
		fmt.Printf("  mkfs.ext4 -d / tar2ext4: %.2f; with staging: %.2f\n", m.Seconds()/w.Seconds(), (s+m).Seconds()/w.Seconds())
		os.Remove(tarPath)
	}
	return nil
}

func streamWrite(tarPath, img string) error {
	in, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(img)
	if err != nil {
		return err
	}
	if err := tar2ext4.Convert(in, out, tar2ext4.InlineData, tar2ext4.MaximumDiskSize(64<<30)); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// allocated is the bytes a file really takes on disk.
func allocated(p string) int64 {
	var st syscall.Stat_t
	if syscall.Stat(p, &st) != nil {
		return 0
	}
	return st.Blocks * 512
}

func makeSynthetic(dir string) error {
	many := filepath.Join(dir, "many")
	if err := os.MkdirAll(many, 0o755); err != nil {
		return err
	}
	for i := 0; i < 20000; i++ {
		if err := os.WriteFile(filepath.Join(many, fmt.Sprintf("f%05d", i)), []byte("x"), 0o644); err != nil {
			return err
		}
	}
	f, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(1 << 30); err != nil {
		return err
	}
	_, err = f.WriteAt([]byte("tail"), 1<<30-4)
	return err
}

// tarTree writes the tree at root as a tar (GNU tar's own, with xattrs
// and sparse files kept).
func tarTree(root, dst string) error {
	out, err := run.Output(context.Background(), []string{"tar", "-cf", dst, "-C", root, "--numeric-owner", "--xattrs", "--sparse", "."})
	if err != nil {
		return fmt.Errorf("tar: %w: %s", err, out)
	}
	return nil
}
