package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/banger-dev/banger/internal/model"
)

const imageColumns = `name, kernel_path, initrd_path, rootfs_path, modules_path, source, digest, size_bytes, config, layers, created_at`

func scanImage(r rowScanner) (model.Image, error) {
	var (
		im              model.Image
		created, config string
		layers          string
	)
	err := r.Scan(&im.Name, &im.KernelPath, &im.InitrdPath, &im.RootfsPath, &im.ModulesPath, &im.Source, &im.Digest, &im.SizeBytes, &config, &layers, &created)
	im.Layers = strings.Fields(layers)
	if err == nil && config != "" {
		var c model.ImageConfig
		if jerr := json.Unmarshal([]byte(config), &c); jerr == nil {
			im.Config = &c
		}
	}
	im.CreatedAt = parseTime(created)
	return im, err
}

func configColumn(c *model.ImageConfig) string {
	if c == nil {
		return ""
	}
	b, _ := json.Marshal(c)
	return string(b)
}

// InsertImage registers an image; a name clash is model.ErrConflict.
func (s *Store) InsertImage(ctx context.Context, im model.Image) error {
	_, err := s.exec(ctx, `INSERT INTO images (`+imageColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		im.Name, im.KernelPath, im.InitrdPath, im.RootfsPath, im.ModulesPath, im.Source, im.Digest, im.SizeBytes, configColumn(im.Config),
		strings.Join(im.Layers, " "), fmtTime(im.CreatedAt))
	if isUnique(err) {
		return model.Errorf(model.ErrConflict, "image name %q is already in use", im.Name)
	}
	if err != nil {
		return fmt.Errorf("inserting image %s: %w", im.Name, err)
	}
	return nil
}

// GetImage finds an image by name.
func (s *Store) GetImage(ctx context.Context, name string) (model.Image, error) {
	im, err := scanImage(s.db.QueryRowContext(ctx, `SELECT `+imageColumns+` FROM images WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return model.Image{}, model.Errorf(model.ErrNotFound, "image %q not found", name)
	}
	if err != nil {
		return model.Image{}, fmt.Errorf("reading image %q: %w", name, err)
	}
	return im, nil
}

// ListImages returns every image by name.
func (s *Store) ListImages(ctx context.Context) ([]model.Image, error) {
	return queryAll(ctx, s.db, "images", scanImage, `SELECT `+imageColumns+` FROM images ORDER BY name`)
}

// DeleteImage removes an image unless a VM still uses it, checked in the
// same statement so a concurrent create cannot slip between check and delete.
func (s *Store) DeleteImage(ctx context.Context, name string) error {
	res, err := s.exec(ctx,
		`DELETE FROM images WHERE name = ? AND NOT EXISTS (SELECT 1 FROM vms WHERE image = ?)`, name, name)
	if err != nil {
		return fmt.Errorf("deleting image %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	if _, err := s.GetImage(ctx, name); err != nil {
		return err
	}
	return model.Errorf(model.ErrState, "image %q is used by a vm; delete the vm first", name)
}
