// Package op runs long work (VM creation, later image pulls) as
// asynchronous operations that callers poll and cancel. The registry keeps
// live operations in memory and records each one's phase changes and
// outcome through a Recorder, so status outlives the daemon process.
package op

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/banger-dev/banger/internal/model"
)

// Recorder persists operations.
type Recorder interface {
	PutOp(ctx context.Context, op model.Operation) error
	GetOp(ctx context.Context, id string) (model.Operation, error)
	ListOps(ctx context.Context) ([]model.Operation, error)
	PruneOps(ctx context.Context, cutoff time.Time) (int64, error)
}

// Func is the body of an operation. It must honour ctx: on cancellation it
// rolls back what it reserved and returns ctx.Err().
type Func func(ctx context.Context, p *Progress) error

// Registry tracks operations. Its mutex is a leaf: nothing else is locked
// while holding it, and no I/O happens under it.
type Registry struct {
	base context.Context
	rec  Recorder
	log  *slog.Logger

	mu   sync.Mutex
	live map[string]*entry
	wg   sync.WaitGroup
}

type entry struct {
	op     model.Operation
	cancel context.CancelFunc
	done   chan struct{}
}

// NewRegistry makes a registry whose operations run under base: cancelling
// base cancels every operation.
func NewRegistry(base context.Context, rec Recorder, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{base: base, rec: rec, log: log, live: map[string]*entry{}}
}

// Begin starts fn as a new operation and returns its initial record.
func (r *Registry) Begin(kind, target string, fn Func) model.Operation {
	now := time.Now().UTC()
	ctx, cancel := context.WithCancel(r.base)
	e := &entry{
		op:     model.Operation{ID: "op-" + model.NewID(), Kind: kind, Target: target, State: model.OpRunning, Phase: "queued", CreatedAt: now, UpdatedAt: now},
		cancel: cancel,
		done:   make(chan struct{}),
	}
	r.mu.Lock()
	r.live[e.op.ID] = e
	snap := e.op
	r.mu.Unlock()
	r.persist(snap)

	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer cancel()
		err := r.run(ctx, fn, &Progress{r: r, e: e})
		r.finish(e, err)
	}()
	return snap
}

func (r *Registry) run(ctx context.Context, fn Func, p *Progress) (err error) {
	defer func() {
		if rec := recover(); rec != nil {
			r.log.Error("operation panic", "op", p.e.op.ID, "panic", rec)
			err = fmt.Errorf("internal error: %v", rec)
		}
	}()
	return fn(ctx, p)
}

func (r *Registry) finish(e *entry, err error) {
	now := time.Now().UTC()
	r.mu.Lock()
	switch {
	case err == nil:
		e.op.State = model.OpSucceeded
		e.op.Phase = "done"
	case errors.Is(err, context.Canceled) || errors.Is(err, model.ErrCancelled):
		e.op.State = model.OpCancelled
		e.op.Error = "cancelled"
	default:
		e.op.State = model.OpFailed
		e.op.Error = err.Error()
	}
	e.op.UpdatedAt, e.op.FinishedAt = now, now
	e.op.Items = nil
	snap := e.op
	r.mu.Unlock()
	r.persist(snap)
	close(e.done)
	r.log.Info("operation finished", "op", snap.ID, "kind", snap.Kind, "target", snap.Target, "state", snap.State, "err", snap.Error)
}

func (r *Registry) persist(op model.Operation) {
	// Recording uses its own short context: an operation's own cancellation
	// must not stop its outcome from being written down.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.rec.PutOp(ctx, op); err != nil {
		r.log.Warn("recording operation", "op", op.ID, "err", err)
	}
}

// Get returns an operation's current record.
func (r *Registry) Get(ctx context.Context, id string) (model.Operation, error) {
	r.mu.Lock()
	e, ok := r.live[id]
	var snap model.Operation
	if ok {
		snap = e.snapshot()
	}
	r.mu.Unlock()
	if ok {
		return snap, nil
	}
	return r.rec.GetOp(ctx, id)
}

// List returns every recorded operation, newest first, with live progress.
func (r *Registry) List(ctx context.Context) ([]model.Operation, error) {
	ops, err := r.rec.ListOps(ctx)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range ops {
		if e, ok := r.live[ops[i].ID]; ok {
			ops[i] = e.snapshot()
		}
	}
	return ops, nil
}

// Wait blocks until the operation finishes or ctx ends, and returns its
// final record.
func (r *Registry) Wait(ctx context.Context, id string) (model.Operation, error) {
	r.mu.Lock()
	e, ok := r.live[id]
	r.mu.Unlock()
	if ok {
		select {
		case <-e.done:
		case <-ctx.Done():
			return model.Operation{}, fmt.Errorf("waiting for operation %s: %w", id, ctx.Err())
		}
	}
	return r.Get(ctx, id)
}

// Cancel stops a running operation and waits (until ctx ends) for it to
// roll back. Cancelling a finished operation is an error that says how it
// ended.
func (r *Registry) Cancel(ctx context.Context, id string) (model.Operation, error) {
	r.mu.Lock()
	e, ok := r.live[id]
	r.mu.Unlock()
	if !ok {
		op, err := r.rec.GetOp(ctx, id)
		if err != nil {
			return model.Operation{}, err
		}
		return op, model.Errorf(model.ErrState, "operation %s already %s", id, op.State)
	}
	select {
	case <-e.done:
		op, _ := r.Get(ctx, id)
		return op, model.Errorf(model.ErrState, "operation %s already %s", id, op.State)
	default:
	}
	e.cancel()
	return r.Wait(ctx, id)
}

// Prune forgets operations that finished more than retention ago, in memory
// and in the record.
func (r *Registry) Prune(ctx context.Context, retention time.Duration) error {
	cutoff := time.Now().Add(-retention)
	r.mu.Lock()
	for id, e := range r.live {
		if e.op.State.Final() && e.op.FinishedAt.Before(cutoff) {
			delete(r.live, id)
		}
	}
	r.mu.Unlock()
	_, err := r.rec.PruneOps(ctx, cutoff)
	return err
}

// Drain waits for every operation to finish. Cancel the base context first
// to make them stop.
func (r *Registry) Drain() { r.wg.Wait() }

// Progress lets an operation report its phase and progress.
type Progress struct {
	r *Registry
	e *entry
}

// snapshot is a copy of the operation that shares no memory with it.
// The caller holds r.mu.
func (e *entry) snapshot() model.Operation {
	op := e.op
	op.Items = append([]model.OpItem(nil), e.op.Items...)
	return op
}

// Phase starts a named phase with total units of work (0 if unmeasured).
// Phase changes are recorded; counts in between (and items) are kept in
// memory only.
func (p *Progress) Phase(name string, total int64) {
	p.r.mu.Lock()
	p.e.op.Phase, p.e.op.Done, p.e.op.Total, p.e.op.Items = name, 0, total, nil
	p.e.op.UpdatedAt = time.Now().UTC()
	snap := p.e.op
	p.r.mu.Unlock()
	p.r.persist(snap)
}

// Add records n more units done in the current phase.
func (p *Progress) Add(n int64) {
	p.r.mu.Lock()
	p.e.op.Done += n
	p.e.op.UpdatedAt = time.Now().UTC()
	p.r.mu.Unlock()
}

// Item records where one part of the current phase is (name: a layer's
// digest), adding it the first time it is named.
func (p *Progress) Item(name string, done, total int64) {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	for i := range p.e.op.Items {
		if p.e.op.Items[i].Name == name {
			p.e.op.Items[i].Done, p.e.op.Items[i].Total = done, total
			return
		}
	}
	p.e.op.Items = append(p.e.op.Items, model.OpItem{Name: name, Done: done, Total: total})
}

// ID is the operation's ID.
func (p *Progress) ID() string { return p.e.op.ID }
