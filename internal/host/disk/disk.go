// Package disk makes the block-device images VMs use: sparse files
// formatted as ext4 with mkfs.ext4 (e2fsprogs), without mounting anything.
package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/banger-dev/banger/internal/host/run"
)

// CreateExt4 makes a sparse file of sizeMiB at path and formats it ext4
// with label. On failure no file is left behind.
func CreateExt4(ctx context.Context, path string, sizeMiB int64, label string) (err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("creating disk %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if err := f.Truncate(sizeMiB << 20); err != nil {
		f.Close()
		return fmt.Errorf("sizing disk %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing disk %s: %w", path, err)
	}
	// lazy init keeps formatting a large sparse file to a fraction of a
	// second; the guest finishes it in the background.
	argv := []string{"mkfs.ext4", "-q", "-F", "-L", label, "-m", "0",
		"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", path, strconv.FormatInt(sizeMiB, 10) + "M"}
	if err := run.Run(ctx, argv); err != nil {
		var re *run.Error
		if errors.As(err, &re) && re.ExitCode() == -1 {
			return fmt.Errorf("formatting disk: %w; is e2fsprogs installed (apt-get install e2fsprogs)?", err)
		}
		return fmt.Errorf("formatting disk: %w", err)
	}
	return nil
}

// Exists reports whether path is a regular file.
func Exists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}
