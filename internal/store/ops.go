package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/banger-dev/banger/internal/model"
)

const opColumns = `id, kind, target, state, phase, done, total, error, created_at, updated_at, COALESCE(finished_at, '')`

func scanOp(r rowScanner) (model.Operation, error) {
	var (
		op                         model.Operation
		state                      string
		created, updated, finished string
	)
	err := r.Scan(&op.ID, &op.Kind, &op.Target, &state, &op.Phase, &op.Done, &op.Total, &op.Error, &created, &updated, &finished)
	op.State = model.OpState(state)
	op.CreatedAt, op.UpdatedAt = parseTime(created), parseTime(updated)
	if finished != "" {
		op.FinishedAt = parseTime(finished)
	}
	return op, err
}

// PutOp inserts or replaces an operation record.
func (s *Store) PutOp(ctx context.Context, op model.Operation) error {
	var finished any
	if !op.FinishedAt.IsZero() {
		finished = fmtTime(op.FinishedAt)
	}
	_, err := s.exec(ctx, `INSERT INTO operations
		(id, kind, target, state, phase, done, total, error, created_at, updated_at, finished_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET state = excluded.state, phase = excluded.phase, done = excluded.done,
			total = excluded.total, error = excluded.error, updated_at = excluded.updated_at, finished_at = excluded.finished_at`,
		op.ID, op.Kind, op.Target, string(op.State), op.Phase, op.Done, op.Total, op.Error,
		fmtTime(op.CreatedAt), fmtTime(op.UpdatedAt), finished)
	if err != nil {
		return fmt.Errorf("saving operation %s: %w", op.ID, err)
	}
	return nil
}

// GetOp finds an operation by ID.
func (s *Store) GetOp(ctx context.Context, id string) (model.Operation, error) {
	op, err := scanOp(s.db.QueryRowContext(ctx, `SELECT `+opColumns+` FROM operations WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return model.Operation{}, model.Errorf(model.ErrNotFound, "operation %q not found; finished operations are forgotten after op_retention", id)
	}
	if err != nil {
		return model.Operation{}, fmt.Errorf("reading operation %q: %w", id, err)
	}
	return op, nil
}

// ListOps returns every operation, newest first.
func (s *Store) ListOps(ctx context.Context) ([]model.Operation, error) {
	return queryAll(ctx, s.db, "operations", scanOp, `SELECT `+opColumns+` FROM operations ORDER BY created_at DESC`)
}

// PruneOps deletes operations that finished before cutoff and reports how
// many went.
func (s *Store) PruneOps(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := s.exec(ctx, `DELETE FROM operations WHERE finished_at IS NOT NULL AND finished_at < ?`, fmtTime(cutoff))
	if err != nil {
		return 0, fmt.Errorf("pruning operations: %w", err)
	}
	return res.RowsAffected()
}

// FailRunningOps marks every operation still recorded as running as failed
// with reason. The daemon calls it at start-up: work in flight died with the
// previous daemon process.
func (s *Store) FailRunningOps(ctx context.Context, reason string) ([]model.Operation, error) {
	running, err := queryAll(ctx, s.db, "operations", scanOp, `SELECT `+opColumns+` FROM operations WHERE state = 'running'`)
	if err != nil {
		return nil, err
	}
	now := fmtTime(time.Now())
	if _, err := s.exec(ctx, `UPDATE operations SET state = 'failed', error = ?, updated_at = ?, finished_at = ?
		WHERE state = 'running'`, reason, now, now); err != nil {
		return nil, fmt.Errorf("failing interrupted operations: %w", err)
	}
	return running, nil
}
