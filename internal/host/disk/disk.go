// Package disk makes the block-device images VMs use: sparse files
// formatted as ext4 with mkfs.ext4 (e2fsprogs), without mounting anything.
package disk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/banger-dev/banger/internal/host/run"

	"github.com/banger-dev/banger/internal/atomicfile"
)

// CreateExt4 makes a sparse file of sizeMiB at path and formats it ext4
// with label. The disk is made under a temporary name and renamed into
// place when formatted, so path is a whole disk or absent, even when the
// daemon and mkfs are killed halfway. An existing disk is never replaced.
func CreateExt4(ctx context.Context, path string, sizeMiB int64, label string) error {
	return atomicfile.CreateWith(path, 0o600, func(f *os.File) error {
		if err := f.Truncate(sizeMiB << 20); err != nil {
			return fmt.Errorf("sizing disk: %w", err)
		}
		// lazy init keeps formatting a large sparse file to a fraction of
		// a second; the guest finishes it in the background.
		argv := []string{"mkfs.ext4", "-q", "-F", "-L", label, "-m", "0",
			"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", f.Name(), strconv.FormatInt(sizeMiB, 10) + "M"}
		if err := run.Run(ctx, argv); err != nil {
			var re *run.Error
			if errors.As(err, &re) && re.ExitCode() == -1 {
				return fmt.Errorf("formatting disk: %w; is e2fsprogs installed (apt-get install e2fsprogs)?", err)
			}
			return fmt.Errorf("formatting disk: %w", err)
		}
		return nil
	})
}

// Exists reports whether path is a regular file.
func Exists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// Copy copies a disk image, keeping its holes, and reflinked where the
// filesystem can (then the copy costs no space until one side changes).
func Copy(ctx context.Context, src, dst string) error {
	return run.Run(ctx, []string{"cp", "--reflink=auto", "--sparse=always", src, dst})
}

// Sum is the SHA-256 of the file at path, in hex, and its size: how
// images, agents and builds are told apart.
func Sum(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
