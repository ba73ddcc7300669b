package op

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/store"
)

func newRegistry(t *testing.T) (*Registry, *store.Store) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := NewRegistry(ctx, st, nil)
	t.Cleanup(func() { cancel(); r.Drain(); st.Close() })
	return r, st
}

func TestOutcomesAreRecorded(t *testing.T) {
	r, st := newRegistry(t)
	ctx := context.Background()
	ok := r.Begin("test", "a", func(_ context.Context, p *Progress) error {
		p.Phase("copying", 10)
		p.Add(4)
		return nil
	})
	bad := r.Begin("test", "b", func(context.Context, *Progress) error { return errors.New("disk full") })
	boom := r.Begin("test", "c", func(context.Context, *Progress) error { panic("bug") })
	for id, want := range map[string]model.OpState{ok.ID: model.OpSucceeded, bad.ID: model.OpFailed, boom.ID: model.OpFailed} {
		got, err := r.Wait(ctx, id)
		if err != nil || got.State != want {
			t.Fatalf("%s: %+v %v, want %s", id, got, err, want)
		}
		rec, err := st.GetOp(ctx, id)
		if err != nil || rec.State != want || rec.FinishedAt.IsZero() {
			t.Fatalf("recorded %s: %+v %v", id, rec, err)
		}
	}
	if got, _ := r.Get(ctx, bad.ID); got.Error != "disk full" {
		t.Fatalf("error not kept: %+v", got)
	}
	if got, _ := r.Get(ctx, boom.ID); got.Error == "" {
		t.Fatal("panic not reported")
	}
}

func TestCancel(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	started := make(chan struct{})
	rolledBack := false
	o := r.Begin("test", "a", func(ctx context.Context, p *Progress) error {
		close(started)
		<-ctx.Done()
		rolledBack = true
		return ctx.Err()
	})
	<-started
	final, err := r.Cancel(ctx, o.ID)
	if err != nil || final.State != model.OpCancelled || !rolledBack {
		t.Fatalf("cancel: %+v %v rolledBack=%v", final, err, rolledBack)
	}
	if _, err := r.Cancel(ctx, o.ID); !errors.Is(err, model.ErrState) {
		t.Fatalf("second cancel: %v", err)
	}
	if _, err := r.Cancel(ctx, "op-nope"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("cancel unknown: %v", err)
	}
}

func TestPrune(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	o := r.Begin("test", "a", func(context.Context, *Progress) error { return nil })
	if _, err := r.Wait(ctx, o.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.Prune(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get(ctx, o.ID); err != nil {
		t.Fatalf("recent op pruned: %v", err)
	}
	time.Sleep(5 * time.Millisecond)
	if err := r.Prune(ctx, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get(ctx, o.ID); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("old op kept: %v", err)
	}
}

// Items show in a running operation's record, one per name in the order
// first reported; a new phase starts without them, and the final record
// has none.
func TestItems(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	reported, release := make(chan struct{}), make(chan struct{})
	o := r.Begin("test", "a", func(_ context.Context, p *Progress) error {
		p.Phase("downloading", 30)
		p.Item("sha256:aa", 0, 10)
		p.Item("sha256:bb", 0, 20)
		p.Item("sha256:aa", 10, 10)
		close(reported)
		<-release
		p.Phase("writing", 0)
		return nil
	})
	<-reported
	got, err := r.Get(ctx, o.ID)
	want := []model.OpItem{{Name: "sha256:aa", Done: 10, Total: 10}, {Name: "sha256:bb", Total: 20}}
	if err != nil || len(got.Items) != 2 || got.Items[0] != want[0] || got.Items[1] != want[1] {
		t.Fatalf("items %+v %v, want %+v", got.Items, err, want)
	}
	got.Items[0].Done = 99 // a snapshot shares nothing with the live record
	if again, _ := r.Get(ctx, o.ID); again.Items[0].Done != 10 {
		t.Fatal("a snapshot's items alias the operation's")
	}
	close(release)
	if final, err := r.Wait(ctx, o.ID); err != nil || len(final.Items) != 0 {
		t.Fatalf("final record %+v %v", final, err)
	}
}
