package pebblestore

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
)

// TestConcurrentWritesAndReads runs writers, searches, trace reads and
// retention at once (run with -race).
func TestConcurrentWritesAndReads(t *testing.T) {
	s := openTest(t, Config{})
	ctx := context.Background()
	var wg sync.WaitGroup
	base := time.Now().Add(-10 * time.Minute)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			g := newGen(uint64(w + 10))
			for i := 0; i < 20; i++ {
				td := ptrace.NewTraces()
				for j := 0; j < 10; j++ {
					g.trace(td, base.Add(time.Duration(i*10+j)*time.Millisecond))
				}
				if err := s.WriteTraces(ctx, td); err != nil {
					t.Error(err)
				}
			}
		}(w)
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 50; i++ {
			trs, err := s.FindTraces(ctx, tracestore.Query{Service: "svc-05", Tags: map[string]string{"http.method": "GET"}})
			if err != nil {
				t.Error(err)
			}
			for _, tr := range trs {
				if tr.Spans.SpanCount() == 0 {
					t.Error("empty trace")
				}
			}
			if _, err := s.GetServices(ctx); err != nil {
				t.Error(err)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 10; i++ {
			if err := s.EnforceRetention(ctx); err != nil {
				t.Error(err)
			}
			if _, err := s.GetDependencies(ctx, time.Now(), time.Hour); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	ids, err := s.FindTraceIDs(ctx, tracestore.Query{Limit: tracestore.MaxLimit})
	if err != nil || len(ids) != 4*20*10 {
		t.Errorf("after concurrent writes: %d traces, %v", len(ids), err)
	}
}
