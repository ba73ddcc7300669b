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

// imageColumns are read from image_names n LEFT JOIN'd onto
// image_contents c (a content with no name reads with name ”).
const imageColumns = `COALESCE(n.name, ''), c.id, c.kernel_path, c.initrd_path, c.rootfs_path, c.modules_path, c.source, c.digest, c.size_bytes, c.config, c.layers, COALESCE(n.created_at, c.created_at)`

const (
	namedFrom   = ` FROM image_names n JOIN image_contents c ON c.id = n.image_id`
	contentFrom = ` FROM image_contents c LEFT JOIN image_names n ON n.image_id = c.id`
)

func scanImage(r rowScanner) (model.Image, error) {
	var (
		im              model.Image
		created, config string
		layers          string
	)
	err := r.Scan(&im.Name, &im.ID, &im.KernelPath, &im.InitrdPath, &im.RootfsPath, &im.ModulesPath, &im.Source, &im.Digest, &im.SizeBytes, &config, &layers, &created)
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

// InsertImage records im's content (unless it is there already) and its
// name; a name clash is model.ErrConflict. With replace, an existing name
// is pointed at im's content instead.
func (s *Store) InsertImage(ctx context.Context, im model.Image, replace bool) error {
	if im.ID == "" {
		return fmt.Errorf("inserting image %s: no content id", im.Name)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning image insert: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO image_contents
		(id, kernel_path, initrd_path, rootfs_path, modules_path, source, digest, size_bytes, config, layers, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		im.ID, im.KernelPath, im.InitrdPath, im.RootfsPath, im.ModulesPath, im.Source, im.Digest, im.SizeBytes, configColumn(im.Config),
		strings.Join(im.Layers, " "), fmtTime(im.CreatedAt)); err != nil {
		return fmt.Errorf("inserting image %s: %w", im.Name, err)
	}
	q := `INSERT INTO image_names (name, image_id, created_at) VALUES (?, ?, ?)`
	if replace {
		q += ` ON CONFLICT (name) DO UPDATE SET image_id = excluded.image_id, created_at = excluded.created_at`
	}
	if _, err := tx.ExecContext(ctx, q, im.Name, im.ID, fmtTime(im.CreatedAt)); err != nil {
		if isUnique(err) {
			return model.Errorf(model.ErrConflict, "image name %q is already in use", im.Name)
		}
		return fmt.Errorf("naming image %s: %w", im.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing image %s: %w", im.Name, err)
	}
	return nil
}

// GetImage finds an image by name.
func (s *Store) GetImage(ctx context.Context, name string) (model.Image, error) {
	im, err := scanImage(s.db.QueryRowContext(ctx, `SELECT `+imageColumns+namedFrom+` WHERE n.name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return model.Image{}, model.Errorf(model.ErrNotFound, "image %q not found", name)
	}
	if err != nil {
		return model.Image{}, fmt.Errorf("reading image %q: %w", name, err)
	}
	return im, nil
}

// GetImageContent finds an image by content ID, with one of its names
// ("" when it has none left).
func (s *Store) GetImageContent(ctx context.Context, id string) (model.Image, error) {
	im, err := scanImage(s.db.QueryRowContext(ctx, `SELECT `+imageColumns+contentFrom+` WHERE c.id = ? ORDER BY n.name LIMIT 1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return model.Image{}, model.Errorf(model.ErrNotFound, "image content %s not found", id)
	}
	if err != nil {
		return model.Image{}, fmt.Errorf("reading image %s: %w", id, err)
	}
	return im, nil
}

// ListImages returns every image by name, then the contents no name
// refers to any more (Name "").
func (s *Store) ListImages(ctx context.Context) ([]model.Image, error) {
	return queryAll(ctx, s.db, "images", scanImage, `SELECT `+imageColumns+contentFrom+` ORDER BY n.name IS NULL, n.name, c.id`)
}

// DeleteImage removes a name unless a VM uses its content, checked in the
// same statement so a concurrent create cannot slip between check and
// delete. It returns the content the name referred to.
func (s *Store) DeleteImage(ctx context.Context, name string) (string, error) {
	im, err := s.GetImage(ctx, name)
	if err != nil {
		return "", err
	}
	res, err := s.exec(ctx, `DELETE FROM image_names WHERE name = ? AND image_id = ? AND NOT EXISTS
		(SELECT 1 FROM vms WHERE image_id = ? OR (image_id = '' AND image = ?))`, name, im.ID, im.ID, name)
	if err != nil {
		return "", fmt.Errorf("deleting image %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return im.ID, nil
	}
	if _, err := s.GetImage(ctx, name); err != nil {
		return "", err
	}
	return "", model.Errorf(model.ErrState, "image %q is used by a vm; delete the vm first", name)
}

// DeleteImageContent removes a content no name and no VM refers to, and
// returns it so its files can go. A content still referred to is
// model.ErrState.
func (s *Store) DeleteImageContent(ctx context.Context, id string) (model.Image, error) {
	im, err := s.GetImageContent(ctx, id)
	if err != nil {
		return model.Image{}, err
	}
	res, err := s.exec(ctx, `DELETE FROM image_contents WHERE id = ?
		AND NOT EXISTS (SELECT 1 FROM image_names WHERE image_id = ?)
		AND NOT EXISTS (SELECT 1 FROM vms WHERE image_id = ?)`, id, id, id)
	if err != nil {
		return model.Image{}, fmt.Errorf("deleting image %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return im, nil
	}
	return model.Image{}, model.Errorf(model.ErrState, "image %s is still named or used by a vm", id)
}
