package redmetrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/storage"

	"github.com/meshlens/meshlens/model"
)

// failingAppendable fails every commit while fail is set, like a full disk.
type failingAppendable struct {
	storage.Appendable
	fail atomic.Bool
}

func (f *failingAppendable) Appender(ctx context.Context) storage.Appender {
	return &failingAppender{Appender: f.Appendable.Appender(ctx), f: f}
}

type failingAppender struct {
	storage.Appender
	f *failingAppendable
}

func (a *failingAppender) Commit() error {
	if a.f.fail.Load() {
		_ = a.Appender.Rollback()
		return errors.New("write /data/metrics/wal/00000001: no space left on device")
	}
	return a.Appender.Commit()
}

func TestSyncCommitsWhatWasConsumed(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	a := New(DefaultConfig(), s, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	// Several Syncs in the same millisecond: each must store its own
	// count, not be refused as a duplicate timestamp.
	for i := 1; i <= 5; i++ {
		_ = a.ConsumeCalls(ctx, []model.Call{call("a", "b", model.DetectServer, 200, time.Millisecond)})
		if err := a.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		q := `sum(istio_requests_total)`
		if got := scalarOf(t, instant(t, s, q, time.Now().Add(time.Second)), q); got != float64(i) {
			t.Fatalf("after Sync %d: %s = %v, want %d", i, q, got, i)
		}
	}
	// A forced flush does not advance the staleness clock.
	if a.epoch != 1 {
		t.Errorf("epoch %d after forced flushes only, want 1", a.epoch)
	}
}

func TestConcurrentSyncsShareFlushes(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	a := New(DefaultConfig(), s, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	const n = 200
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = a.ConsumeCalls(ctx, []model.Call{call("a", "b", model.DetectServer, 200, time.Millisecond)})
			if err := a.Sync(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	q := `sum(istio_requests_total)`
	if got := scalarOf(t, instant(t, s, q, time.Now().Add(time.Second)), q); got != n {
		t.Fatalf("%s = %v, want %d", q, got, n)
	}
	if f := testutil.ToFloat64(a.flushes); f >= n {
		t.Errorf("%d concurrent Syncs ran %v flushes; they should share them", n, f)
	}
}

func TestSyncFailsWhileStorageFailsAndRecovers(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	app := &failingAppendable{Appendable: s}
	a := New(DefaultConfig(), app, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	_ = a.ConsumeCalls(ctx, []model.Call{call("a", "b", model.DetectServer, 200, time.Millisecond)})
	app.fail.Store(true)
	if err := a.Sync(ctx); err == nil {
		t.Fatal("Sync succeeded while storage refused the commit")
	}
	_ = a.ConsumeCalls(ctx, []model.Call{call("a", "b", model.DetectServer, 200, time.Millisecond)})
	app.fail.Store(false)
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	q := `sum(istio_requests_total)`
	if got := scalarOf(t, instant(t, s, q, time.Now().Add(time.Second)), q); got != 2 {
		t.Fatalf("after storage recovered %s = %v, want 2 (nothing lost)", q, got)
	}
	// A cancelled wait for the flush lock is an error, not a hang.
	a.flushSem <- struct{}{}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := a.Sync(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Sync with the flush lock held: %v, want a deadline error", err)
	}
	<-a.flushSem
}

// TestSyncWritesOnlyWhatChanged: a forced flush writes the series that
// received data since the last flush and leaves the others alone (their
// newest values are already stored); a periodic flush writes them all.
func TestSyncWritesOnlyWhatChanged(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	a := New(DefaultConfig(), s, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	_ = a.ConsumeCalls(ctx, []model.Call{call("a", "b", model.DetectServer, 200, time.Millisecond), call("c", "d", model.DetectServer, 200, time.Millisecond)})
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	both := testutil.ToFloat64(a.appended)
	_ = a.ConsumeCalls(ctx, []model.Call{call("a", "b", model.DetectServer, 200, time.Millisecond)})
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	second := testutil.ToFloat64(a.appended) - both
	if second <= 0 || second >= both {
		t.Fatalf("second Sync appended %v samples; the first (two edges) %v: want only the changed edge's", second, both)
	}
	at := time.Now().Add(time.Second)
	for q, want := range map[string]float64{
		`count_over_time(istio_requests_total{destination_canonical_service="d"}[1h])`: 1,
		`count_over_time(istio_requests_total{destination_canonical_service="b"}[1h])`: 2,
		`sum(istio_requests_total)`: 3,
	} {
		if got := scalarOf(t, instant(t, s, q, at), q); got != want {
			t.Errorf("%s = %v, want %v", q, got, want)
		}
	}
	// A periodic flush writes every live series again.
	if err := a.Flush(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(a.appended) - both - second; got != both {
		t.Errorf("periodic flush appended %v samples, want every live series (%v)", got, both)
	}
}

// TestSyncRetriesWhatAFailedFlushHeld: series snapshotted by a flush whose
// commit failed are written by the next Sync even without new data.
func TestSyncRetriesWhatAFailedFlushHeld(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	app := &failingAppendable{Appendable: s}
	a := New(DefaultConfig(), app, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	_ = a.ConsumeCalls(ctx, []model.Call{call("a", "b", model.DetectServer, 200, time.Millisecond)})
	app.fail.Store(true)
	if err := a.Sync(ctx); err == nil {
		t.Fatal("Sync succeeded while storage refused the commit")
	}
	app.fail.Store(false)
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	q := `sum(istio_requests_total)`
	if got := scalarOf(t, instant(t, s, q, time.Now().Add(time.Second)), q); got != 1 {
		t.Fatalf("after storage recovered %s = %v, want 1", q, got)
	}
}
