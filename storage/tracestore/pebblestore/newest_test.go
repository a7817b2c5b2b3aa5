package pebblestore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
)

// TestNewestFirstMatchesWholeBucketSearch compares the batch-by-batch
// search (newest batch first, early stop) with the search that reads every
// batch of the bucket, over one store whose batches arrive out of time
// order (late and early spans, a batch spanning two buckets), for searches
// combining every query field and limits from 1 to all.
func TestNewestFirstMatchesWholeBucketSearch(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, Config{Dir: dir})
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	g := newGen(5)
	now := time.Now()
	var written []pcommon.TraceID
	for b := range 120 {
		if b == 60 {
			// A restart: later batches must still bound the traces
			// written before it, although the ones after it start
			// earlier (below).
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openTest(t, Config{Dir: dir})
		}
		td := ptrace.NewTraces()
		for range 1 + rng.IntN(15) {
			// Mostly in write order, some spans minutes late or early.
			at := now.Add(-2*time.Hour + time.Duration(b)*time.Minute)
			if b >= 60 {
				at = at.Add(-70 * time.Minute)
			}
			if rng.IntN(5) == 0 {
				at = at.Add(time.Duration(rng.IntN(60)-30) * time.Minute)
			}
			written = append(written, g.trace(td, at))
		}
		// Spans of earlier traces arriving in a later batch, starting
		// before or after the trace's other spans.
		for range rng.IntN(3) {
			rs := td.ResourceSpans().AppendEmpty()
			rs.Resource().Attributes().PutStr("service.name", fmt.Sprintf("svc-%02d", rng.IntN(20)))
			sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
			sp.SetTraceID(written[rng.IntN(len(written))])
			sp.SetSpanID(pcommon.SpanID{byte(b), 1, 2, 3, 4, 5, 6, byte(rng.IntN(256))})
			sp.SetName("GET /api/v1/resource03/{id}")
			start := now.Add(-2*time.Hour + time.Duration(b-rng.IntN(20))*time.Minute)
			sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
			sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Duration(rng.IntN(30)) * time.Millisecond)))
			sp.Attributes().PutStr("http.method", "GET")
		}
		if err := s.WriteTraces(ctx, td); err != nil {
			t.Fatal(err)
		}
	}
	search := func(q tracestore.Query, whole bool, giveUpAfter int) []pcommon.TraceID {
		t.Helper()
		saved, savedBatches := s.startKeysFrom, s.newestFirstBatches
		if whole {
			s.startKeysFrom = ^uint64(0) // every batch predates start keys
		}
		s.newestFirstBatches = giveUpAfter
		defer func() { s.startKeysFrom, s.newestFirstBatches = saved, savedBatches }()
		ids, err := s.FindTraceIDs(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	var queries []tracestore.Query
	for _, limit := range []int{1, 3, 20, tracestore.MaxLimit} {
		for _, svc := range []string{"", "svc-02", "svc-09"} {
			queries = append(queries,
				tracestore.Query{Service: svc, Limit: limit},
				tracestore.Query{Service: svc, Tags: map[string]string{"http.method": "GET"}, Limit: limit},
				tracestore.Query{Service: svc, Tags: map[string]string{"http.status_code": "503"}, Limit: limit},
				tracestore.Query{Service: svc, DurationMin: 10 * time.Millisecond, Limit: limit},
				tracestore.Query{Service: svc, DurationMax: 3 * time.Millisecond, Limit: limit},
				tracestore.Query{Service: svc, StartMin: now.Add(-90 * time.Minute), StartMax: now.Add(-30 * time.Minute), Limit: limit},
			)
		}
		queries = append(queries,
			tracestore.Query{Service: "svc-05", Operation: "GET /api/v1/resource03/{id}", Limit: limit},
			tracestore.Query{Service: "svc-05", Operation: "GET /api/v1/resource03/{id}", Tags: map[string]string{"http.status_code": "200"}, DurationMin: 5 * time.Millisecond, Limit: limit},
			tracestore.Query{Service: "svc-11", RemoteService: "svc-16", Limit: limit},
			tracestore.Query{Service: "svc-11", SpanKind: "client", Limit: limit},
		)
	}
	nonEmpty := 0
	for _, q := range queries {
		name := fmt.Sprintf("%+v", q)
		// A newest-first search that gives up after 3 batches and reads
		// the bucket whole must not keep anything of its attempt.
		a, b, c := search(q, false, newestFirstBatches), search(q, true, newestFirstBatches), search(q, false, 3)
		if !slices.Equal(c, b) {
			t.Errorf("%s: newest first giving up after 3 batches: %d traces, whole bucket %d", name, len(c), len(b))
		}
		if !slices.Equal(a, b) {
			for i := range a {
				if a[i] != b[i] {
					ta, _ := s.GetTrace(ctx, a[i])
					tb, _ := s.GetTrace(ctx, b[i])
					t.Logf("first difference at %d: %v (%d spans) vs %v (%d spans)", i, a[i], ta.Spans.SpanCount(), b[i], tb.Spans.SpanCount())
					break
				}
			}
			t.Errorf("%s:\n newest first %d traces %v\n whole bucket %d traces %v", name, len(a), a, len(b), b)
		}
		if len(a) > 0 {
			nonEmpty++
		}
	}
	if nonEmpty < len(queries)*3/4 {
		t.Errorf("only %d of %d searches found anything: the comparison proves little", nonEmpty, len(queries))
	}
}
