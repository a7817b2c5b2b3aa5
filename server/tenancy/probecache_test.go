package tenancy

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/storage/tracestore"
)

// countingReader has services a (tenant x) and b (tenant y) and counts
// FindTraceIDs calls.
type countingReader struct {
	tracestore.Reader
	finds atomic.Int64
}

func (r *countingReader) GetServices(context.Context) ([]string, error) {
	return []string{"a", "b"}, nil
}

func (r *countingReader) FindTraceIDs(_ context.Context, q tracestore.Query) ([]pcommon.TraceID, error) {
	r.finds.Add(1)
	owner := map[string]string{"a": "x", "b": "y"}[q.Service]
	if q.Tags[model.TenantAttribute] == owner {
		return []pcommon.TraceID{{1}}, nil
	}
	return nil, nil
}

func TestProbeCache(t *testing.T) {
	cr := &countingReader{}
	r := Reader(cr).(tenantReader)
	now := time.Unix(1_700_000_000, 0)
	r.cache.now = func() time.Time { return now }
	ctx := NewContext(context.Background(), "x")
	list := func() []string {
		t.Helper()
		s, err := r.GetServices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, step := range []struct {
		advance   time.Duration
		wantFinds int64 // cumulative
	}{
		{0, 2},                         // cold: both probed
		{time.Second, 2},               // warm: none
		{probeNoTTL + time.Second, 3},  // the "no" for b expired; the "yes" for a did not
		{probeYesTTL + time.Second, 5}, // both expired
	} {
		now = now.Add(step.advance)
		if got := list(); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("services of x: %v", got)
		}
		if n := cr.finds.Load(); n != step.wantFinds {
			t.Errorf("after +%s: %d probes, want %d", step.advance, n, step.wantFinds)
		}
	}
	// Another tenant's answers are its own.
	if s, _ := r.GetServices(NewContext(context.Background(), "y")); !slices.Equal(s, []string{"b"}) {
		t.Errorf("services of y: %v", s)
	}
}

func TestProbeCacheBounded(t *testing.T) {
	c := newProbeCache()
	for i := 0; i < probeCacheSize+10; i++ {
		c.put(string(rune(i)), true)
	}
	if n := len(c.m); n > probeCacheSize {
		t.Errorf("%d entries, bound %d", n, probeCacheSize)
	}
}
