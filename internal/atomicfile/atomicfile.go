// Package atomicfile writes files so that a reader, or a crash at any
// instant, sees the old content or the new one and never a part: the data
// goes to a temporary file in the same directory, is synced, and is renamed
// over the target. A failed write leaves no temporary file behind, and
// CleanTemps removes those a killed process left.
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// tempMarker is in every temporary file's name (".NAME.tmp-RANDOM").
const tempMarker = ".tmp-"

// WriteFile writes data to path atomically with mode perm.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return WriteWith(path, perm, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// WriteWith creates path atomically: write fills the temporary file (it
// may also run a program on f.Name()), which is then synced and renamed
// into place with mode perm.
func WriteWith(path string, perm os.FileMode, write func(f *os.File) error) error {
	return put(path, perm, write, false)
}

// CreateWith is WriteWith that never replaces: it fails with an error
// matching fs.ErrExist when path exists, before or by the time it is done.
func CreateWith(path string, perm os.FileMode, write func(f *os.File) error) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("creating %s: %w", path, fs.ErrExist)
	}
	return put(path, perm, write, true)
}

func put(path string, perm os.FileMode, write func(f *os.File) error, exclusive bool) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+tempMarker+"*")
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("setting mode of %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", path, err)
	}
	if exclusive {
		// A hard link fails if path appeared meanwhile; the temporary
		// name goes either way.
		err := os.Link(f.Name(), path)
		os.Remove(f.Name())
		if err != nil {
			return fmt.Errorf("creating %s: %w", path, err)
		}
	} else if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("renaming into %s: %w", path, err)
	}
	// The rename is durable once the directory is synced.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// CleanTemps removes the temporary files an interrupted write left in dir
// and returns their names.
func CleanTemps(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	var removed []string
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, ".") && strings.Contains(n, tempMarker) && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(dir, n)); err == nil {
				removed = append(removed, n)
			}
		}
	}
	return removed, nil
}
