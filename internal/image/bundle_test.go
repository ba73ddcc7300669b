package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/bundle"
	"github.com/banger-dev/banger/internal/model"
)

type bfile struct{ name, content string }

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// makeBundle writes a bundle whose manifest lists listed and whose body
// holds sent.
func makeBundle(t *testing.T, listed, sent []bfile) []byte {
	t.Helper()
	m := bundle.Manifest{Format: bundle.Format, Name: "x"}
	for _, f := range listed {
		m.Files = append(m.Files, bundle.File{Name: f.name, Size: int64(len(f.content)), SHA256: sum(f.content)})
	}
	var buf bytes.Buffer
	w, err := bundle.NewWriter(&buf, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range sent {
		if err := w.AddFile(f.name, int64(len(f.content)), strings.NewReader(f.content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReceiveBundle(t *testing.T) {
	// A root big and varied enough that a truncation cuts into it.
	var root strings.Builder
	rng := rand.New(rand.NewPCG(1, 2))
	for root.Len() < 1<<20 {
		root.WriteString(strconv.FormatUint(rng.Uint64(), 36))
	}
	files := []bfile{{"vmlinuz", "kernel"}, {"rootfs.ext4", root.String()}, {"modules/6.1/modules.dep", "dep"}}
	dir := t.TempDir()
	m, err := ReceiveBundle(bytes.NewReader(makeBundle(t, files, files)), dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "x" || len(m.Files) != 3 {
		t.Fatalf("manifest: %+v", m)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "modules/6.1/modules.dep")); string(b) != "dep" {
		t.Fatalf("modules.dep = %q", b)
	}

	changed := []bfile{{"vmlinuz", "kernel"}, {"rootfs.ext4", strings.Replace(root.String(), "a", "b", 1)}, {"modules/6.1/modules.dep", "dep"}}
	good := makeBundle(t, files, files)
	for name, c := range map[string]struct {
		data []byte
		want string
	}{
		"changed content": {makeBundle(t, files, changed), "rootfs.ext4 has sha256"},
		"missing file":    {makeBundle(t, files, files[:2]), "ends before modules/6.1/modules.dep"},
		"unlisted file":   {makeBundle(t, files[:2], files), `"modules/6.1/modules.dep", which its manifest does not list`},
		"truncated":       {good[:len(good)/2], "corrupt"},
	} {
		_, err := ReceiveBundle(bytes.NewReader(c.data), t.TempDir())
		if !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalid naming %q", name, err, c.want)
		}
	}
	for _, bad := range []string{"modules/../../etc/passwd", "/etc/passwd", "modules", "other"} {
		_, err := ReceiveBundle(bytes.NewReader(makeBundle(t, append(files[:2:2], bfile{bad, "x"}), files[:2])), t.TempDir())
		if !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), "bad file") {
			t.Errorf("manifest naming %q: %v", bad, err)
		}
	}
	if _, err := ReceiveBundle(strings.NewReader("plain text"), t.TempDir()); err == nil {
		t.Error("a file that is no bundle was received")
	}
}
