package kernel

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"

	"github.com/banger-dev/banger/internal/testimage"
)

func TestRejectsNonBzImage(t *testing.T) {
	if _, err := Extract(make([]byte, 4096)); err == nil {
		t.Fatal("accepted zeros as a bzImage")
	}
}

// The Debian cloud kernel that banger builds is extracted for real when
// the image cache has one (it does in CI: the e2e tests build it).
func TestExtractDebianKernel(t *testing.T) {
	kernel := testimage.Kernel(t)
	dir := t.TempDir()
	k := filepath.Join(dir, "vmlinuz")
	b, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := Vmlinux(k)
	if err != nil {
		t.Fatal(err)
	}
	if !IsELF(out) || out != k+".vmlinux" {
		t.Fatalf("vmlinux %s is not ELF", out)
	}
	again, err := Vmlinux(k)
	if err != nil || again != out {
		t.Fatalf("second call: %s %v", again, err)
	}
	if same, _ := Vmlinux(out); same != out {
		t.Fatal("an ELF kernel should be used as is")
	}
}

// fakeBzImage wraps payload in a minimal bzImage setup header.
func fakeBzImage(payload []byte) []byte {
	const setupSects = 4
	img := make([]byte, (setupSects+1)*512+64+len(payload))
	img[0x1f1] = setupSects
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint32(img[0x248:], 64)
	binary.LittleEndian.PutUint32(img[0x24c:], uint32(len(payload)))
	copy(img[(setupSects+1)*512+64:], payload)
	return img
}

func TestEveryCompression(t *testing.T) {
	elf := append([]byte("\x7fELF"), bytes.Repeat([]byte("kernel text "), 1000)...)
	compress := map[string]func(io.Writer) (io.WriteCloser, error){
		"gzip": func(w io.Writer) (io.WriteCloser, error) { return gzip.NewWriter(w), nil },
		"xz":   func(w io.Writer) (io.WriteCloser, error) { return xz.NewWriter(w) },
		"zstd": func(w io.Writer) (io.WriteCloser, error) { return zstd.NewWriter(w) },
		"lz4-legacy": func(w io.Writer) (io.WriteCloser, error) {
			zw := lz4.NewWriter(w)
			return zw, zw.Apply(lz4.LegacyOption(true))
		},
	}
	for name, mk := range compress {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := mk(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(elf); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := Extract(fakeBzImage(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, elf) {
				t.Fatalf("extracted %d bytes, want %d", len(got), len(elf))
			}
		})
	}
	if _, err := Extract(fakeBzImage([]byte("BZh91AY"))); err == nil {
		t.Fatal("unsupported compression accepted")
	}
}
