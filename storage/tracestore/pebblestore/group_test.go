package pebblestore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

// TestGroupedWritesKeepCallersApart holds a commit "in progress" while
// callers arrive, so that they all join one group, and checks that the
// group is one batch and that every caller's spans come back with their
// own resource and scope although they share trace ids and positions
// within their requests.
func TestGroupedWritesKeepCallersApart(t *testing.T) {
	s := openTest(t, Config{})
	ctx := context.Background()
	const callers, traces = 16, 3
	base := time.Now().Add(-time.Minute)

	s.gmu.Lock()
	s.committing = true // as if another group's batch were being written
	s.gmu.Unlock()
	batches0 := testutil.ToFloat64(s.m.Batches)

	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			td := ptrace.NewTraces()
			rs := td.ResourceSpans().AppendEmpty()
			rs.Resource().Attributes().PutStr("service.name", fmt.Sprintf("caller-%02d", c))
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName(fmt.Sprintf("scope-%02d", c))
			for k := range traces {
				sp := ss.Spans().AppendEmpty()
				sp.SetTraceID(tracestoretest.TraceID(7, uint64(k+1)))
				sp.SetSpanID(tracestoretest.SpanID(uint64(c*traces + k + 1)))
				sp.SetName("op")
				sp.SetStartTimestamp(pcommon.NewTimestampFromTime(base.Add(time.Duration(k) * time.Millisecond)))
				sp.SetEndTimestamp(pcommon.NewTimestampFromTime(base.Add(time.Duration(k)*time.Millisecond + time.Duration(c+1)*time.Millisecond)))
				sp.Attributes().PutInt("caller", int64(c))
			}
			errs <- s.WriteTraces(ctx, td)
		}()
	}
	// Wait until every caller has joined the open group, then end the
	// pretend commit the way commitGroup does.
	for deadline := time.Now().Add(10 * time.Second); ; {
		s.gmu.Lock()
		joined := 0
		if s.open != nil {
			joined = len(s.open.w.reqs)
		}
		if joined == callers {
			close(s.open.turn)
			s.gmu.Unlock()
			break
		}
		s.gmu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d callers joined the open group", joined, callers)
		}
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(s.m.Batches) - batches0; got != 1 {
		t.Errorf("%d callers were written in %v batches, want 1", callers, got)
	}

	for k := range traces {
		tr, err := s.GetTrace(ctx, tracestoretest.TraceID(7, uint64(k+1)))
		if err != nil {
			t.Fatal(err)
		}
		if n := tr.Spans.SpanCount(); n != callers {
			t.Errorf("trace %d: %d spans, want %d", k, n, callers)
		}
		rss := tr.Spans.ResourceSpans()
		for i := range rss.Len() {
			svc, _ := rss.At(i).Resource().Attributes().Get("service.name")
			for j := range rss.At(i).ScopeSpans().Len() {
				ss := rss.At(i).ScopeSpans().At(j)
				for n := range ss.Spans().Len() {
					c, _ := ss.Spans().At(n).Attributes().Get("caller")
					want := fmt.Sprintf("caller-%02d", c.Int())
					if svc.Str() != want || ss.Scope().Name() != fmt.Sprintf("scope-%02d", c.Int()) {
						t.Errorf("trace %d: span of caller %d under resource %q, scope %q", k, c.Int(), svc.Str(), ss.Scope().Name())
					}
				}
			}
		}
	}
	// The group's one posting list per term finds every caller's spans.
	for c := range callers {
		svc := fmt.Sprintf("caller-%02d", c)
		ids, err := s.FindTraceIDs(ctx, tracestore.Query{Service: svc, Tags: map[string]string{"caller": fmt.Sprint(c)},
			DurationMin: time.Duration(c+1) * time.Millisecond, Limit: 10})
		if err != nil || len(ids) != traces {
			t.Errorf("search %s caller=%d: %d traces, %v; want %d", svc, c, len(ids), err, traces)
		}
	}
	// The next write, with no commit in progress, leads its own group.
	if err := s.WriteTraces(ctx, tracestoretest.Fixture(base)); err != nil {
		t.Fatal(err)
	}
}
