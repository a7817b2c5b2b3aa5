// Package diskguard refuses writes, with a retryable error, while the file
// system under a store has less free space than a reserve, and contains a
// store that fails hard when it runs out anyway.
//
// It exists for the embedded trace store: Pebble treats a failed WAL write
// (ENOSPC) as fatal — its Logger.Fatalf is called from the commit, and the
// commit pipeline stays wedged afterwards — so a write must not reach it
// on a full disk. The TSDB needs no guard: a failed WAL write rolls the
// append back and the next commit succeeds once space returns.
package diskguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"syscall"

	"github.com/meshlens/meshlens/pipeline"
)

// ErrLowDisk is returned (wrapped) while free space is below the reserve.
// It is transient: receivers answer gRPC UNAVAILABLE / HTTP 503 and the
// client retries; writes are accepted again as soon as space returns.
var ErrLowDisk = errors.New("not enough free disk space")

// ErrStoreFailed is returned (wrapped) for every write after the guarded
// store panicked: the store cannot take writes any more in this process.
var ErrStoreFailed = errors.New("trace store failed")

// Guard checks the free space of the file system holding Path.
type Guard struct {
	// Path is a directory on the file system to watch.
	Path string
	// MinFreeBytes is the reserve; 0 turns the check off.
	MinFreeBytes uint64
}

// Check returns an error wrapping ErrLowDisk when fewer than MinFreeBytes
// are available to an unprivileged writer under Path. It costs one
// statfs(2) (about a microsecond), so it runs on every write: a cached
// answer would let a burst written meanwhile fill the disk.
func (g Guard) Check() error {
	if g.MinFreeBytes == 0 {
		return nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(g.Path, &st); err != nil {
		// Not knowing is no reason to refuse data: the write reports
		// the real error if there is one.
		return nil
	}
	free := st.Bavail * uint64(st.Bsize)
	if free < g.MinFreeBytes {
		return fmt.Errorf("%s: %d bytes free, below storage.min_free_bytes (%d); free space and retry: %w",
			g.Path, free, g.MinFreeBytes, ErrLowDisk)
	}
	return nil
}

// Traces wraps a trace consumer: a batch is refused while the guard
// reports low disk, and a panic of next (Pebble's fatal commit error) is
// turned into an error; after one, every later batch is refused at once
// with ErrStoreFailed, because the store's commit pipeline no longer
// completes and a write would hang.
func Traces(next pipeline.TraceConsumer, g Guard, logger *slog.Logger) pipeline.TraceConsumer {
	return &traces{next: next, g: g, logger: logger}
}

type traces struct {
	next   pipeline.TraceConsumer
	g      Guard
	logger *slog.Logger
	failed atomic.Pointer[string]
}

func (t *traces) ConsumeTraces(ctx context.Context, td ptrace.Traces) (err error) {
	if msg := t.failed.Load(); msg != nil {
		return fmt.Errorf("%s (restart meshlens once the cause is fixed): %w", *msg, ErrStoreFailed)
	}
	if err := t.g.Check(); err != nil {
		return fmt.Errorf("spans not stored: %w", err)
	}
	defer func() {
		if r := recover(); r != nil {
			msg := fmt.Sprintf("trace store write panicked: %v", r)
			t.failed.Store(&msg)
			t.logger.Error("the trace store failed and refuses every write until meshlens restarts; spans acknowledged before are on disk", "panic", fmt.Sprint(r))
			err = fmt.Errorf("%s: %w", msg, ErrStoreFailed)
		}
	}()
	return t.next.ConsumeTraces(ctx, td)
}
