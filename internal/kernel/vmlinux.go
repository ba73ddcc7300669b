// Package kernel turns a Linux bzImage into the uncompressed ELF vmlinux
// that Firecracker boots on x86_64, reading the payload location from the
// bzImage setup header and decompressing it in Go (gzip, xz, zstd, lz4).
package kernel

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"

	"github.com/banger-dev/banger/internal/atomicfile"
)

// IsELF reports whether the file at path starts with the ELF magic.
func IsELF(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var m [4]byte
	_, err = io.ReadFull(f, m[:])
	return err == nil && string(m[:]) == "\x7fELF"
}

// Vmlinux returns an ELF kernel for image: image itself if it is one, else
// a vmlinux extracted once beside it (image + ".vmlinux", written
// atomically so concurrent callers cannot see a partial file).
func Vmlinux(image string) (string, error) {
	if IsELF(image) {
		return image, nil
	}
	out := image + ".vmlinux"
	if IsELF(out) {
		return out, nil
	}
	raw, err := os.ReadFile(image)
	if err != nil {
		return "", fmt.Errorf("reading kernel: %w", err)
	}
	elf, err := Extract(raw)
	if err != nil {
		return "", fmt.Errorf("extracting vmlinux from %s: %w", image, err)
	}
	if err := atomicfile.WriteFile(out, elf, 0o644); err != nil {
		return "", fmt.Errorf("installing vmlinux: %w", err)
	}
	return out, nil
}

// Extract decompresses a bzImage's payload and checks it is ELF.
func Extract(bz []byte) ([]byte, error) {
	if len(bz) < 0x260 || string(bz[0x202:0x206]) != "HdrS" {
		return nil, errors.New("not a bzImage (no HdrS setup header)")
	}
	setupSects := int(bz[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	off := (setupSects + 1) * 512
	payloadOff := int(binary.LittleEndian.Uint32(bz[0x248:]))
	payloadLen := int(binary.LittleEndian.Uint32(bz[0x24c:]))
	start, end := off+payloadOff, off+payloadOff+payloadLen
	if payloadLen == 0 || start < 0 || end > len(bz) {
		return nil, fmt.Errorf("payload [%d, %d) lies outside the %d-byte image", start, end, len(bz))
	}
	payload := bz[start:end]
	r, err := decompressor(payload)
	if err != nil {
		return nil, err
	}
	elf, err := io.ReadAll(r)
	if err != nil && len(elf) == 0 {
		return nil, fmt.Errorf("decompressing payload: %w", err)
	}
	if !bytes.HasPrefix(elf, []byte("\x7fELF")) {
		return nil, errors.New("decompressed payload is not an ELF kernel")
	}
	return elf, nil
}

func decompressor(p []byte) (io.Reader, error) {
	switch {
	case bytes.HasPrefix(p, []byte{0x1f, 0x8b}):
		return gzip.NewReader(bytes.NewReader(p))
	case bytes.HasPrefix(p, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return xz.NewReader(bytes.NewReader(p))
	case bytes.HasPrefix(p, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(bytes.NewReader(p))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case bytes.HasPrefix(p, []byte{0x02, 0x21, 0x4c, 0x18}):
		// The kernel uses lz4's legacy frame format.
		return lz4.NewReader(bytes.NewReader(p)), nil
	}
	return nil, fmt.Errorf("unsupported kernel compression (payload starts %x)", p[:min(6, len(p))])
}
