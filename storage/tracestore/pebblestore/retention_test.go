package pebblestore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

// bulk returns n single-span traces of service svc starting at start, each
// with a 200-byte attribute so that the data reaches sstables.
func bulk(svc string, hi uint64, n int, start time.Time) ptrace.Traces {
	specs := make([]tracestoretest.SpanSpec, n)
	pad := strings.Repeat("x", 200)
	for i := range specs {
		specs[i] = tracestoretest.SpanSpec{Service: svc, Trace: tracestoretest.TraceID(hi, uint64(i+1)), ID: tracestoretest.SpanID(1),
			Name: "op", Kind: ptrace.SpanKindServer, Start: start.Add(time.Duration(i) * time.Microsecond), Duration: time.Millisecond,
			Attrs: map[string]any{"pad": pad, "i": int64(i)}}
	}
	return tracestoretest.Build(specs...)
}

func TestRetentionTTL(t *testing.T) {
	c := &clock{}
	c.set(time.Date(2026, 1, 1, 12, 30, 0, 0, time.UTC))
	s := openTest(t, Config{TTL: 2 * time.Hour, Now: c.now, RetentionInterval: time.Hour})
	ctx := context.Background()
	if err := s.WriteTraces(ctx, bulk("old", 1, 20000, c.now().Add(-3*time.Hour))); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteTraces(ctx, bulk("new", 2, 10, c.now().Add(-10*time.Minute))); err != nil {
		t.Fatal(err)
	}
	if err := s.DB().Flush(); err != nil {
		t.Fatal(err)
	}
	before := s.TableBytes()
	if err := s.EnforceRetention(ctx); err != nil {
		t.Fatal(err)
	}
	after := s.TableBytes()
	if _, err := s.GetTrace(ctx, tracestoretest.TraceID(1, 1)); !errors.Is(err, tracestore.ErrTraceNotFound) {
		t.Errorf("expired trace still readable: %v", err)
	}
	if _, err := s.GetTrace(ctx, tracestoretest.TraceID(2, 1)); err != nil {
		t.Errorf("recent trace lost: %v", err)
	}
	svcs, _ := s.GetServices(ctx)
	if !slices.Equal(svcs, []string{"new"}) {
		t.Errorf("services after expiry = %v", svcs)
	}
	if after >= before/2 {
		t.Errorf("disk not reclaimed: %d bytes before, %d after", before, after)
	}
	t.Logf("disk %d -> %d bytes after dropping the expired bucket", before, after)

	// Time passes: the recent data expires too.
	c.add(3 * time.Hour)
	if err := s.EnforceRetention(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetTrace(ctx, tracestoretest.TraceID(2, 1)); !errors.Is(err, tracestore.ErrTraceNotFound) {
		t.Errorf("trace older than TTL still readable: %v", err)
	}
}

func TestRetentionSizeCap(t *testing.T) {
	c := &clock{}
	c.set(time.Date(2026, 1, 1, 12, 30, 0, 0, time.UTC))
	dir := t.TempDir()
	s := openTest(t, Config{Dir: dir, Now: c.now, RetentionInterval: time.Hour})
	ctx := context.Background()
	for h := 3; h >= 0; h-- {
		if err := s.WriteTraces(ctx, bulk(fmt.Sprintf("h%d", h), uint64(10+h), 10000, c.now().Add(-time.Duration(h)*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DB().Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.DB().Compact(ctx, []byte{0}, []byte{0xff}, false); err != nil {
		t.Fatal(err)
	}
	used := s.TableBytes()
	// Reopen with a cap of 60% of the current size: the oldest buckets go.
	s.Close()
	reg := prometheus.NewRegistry()
	s = openTest(t, Config{Dir: dir, Now: c.now, RetentionInterval: time.Hour, MaxDiskBytes: int64(used * 6 / 10), Registerer: reg})
	if n := testutil.ToFloat64(s.m.dropped.WithLabelValues("size")); n < 1 {
		t.Errorf("buckets dropped for size: metric = %v", n)
	}
	if got := s.DiskUsage(); got > used*6/10 {
		t.Errorf("disk %d bytes over cap %d", got, used*6/10)
	}
	if _, err := s.GetTrace(ctx, tracestoretest.TraceID(13, 1)); !errors.Is(err, tracestore.ErrTraceNotFound) {
		t.Errorf("oldest bucket kept over the size cap: %v", err)
	}
	if _, err := s.GetTrace(ctx, tracestoretest.TraceID(10, 1)); err != nil {
		t.Errorf("newest bucket dropped: %v", err)
	}
}

func TestMaxSpansPerTrace(t *testing.T) {
	s := openTest(t, Config{MaxSpansPerTrace: 100})
	base := tracestoretest.Base()
	specs := make([]tracestoretest.SpanSpec, 150)
	for i := range specs {
		specs[i] = tracestoretest.SpanSpec{Service: "a", Trace: tracestoretest.TraceID(5, 5), ID: tracestoretest.SpanID(uint64(i + 1)),
			Name: "op", Kind: ptrace.SpanKindInternal, Start: base, Duration: time.Millisecond}
	}
	if err := s.WriteTraces(context.Background(), tracestoretest.Build(specs...)); err != nil {
		t.Fatal(err)
	}
	tr, err := s.GetTrace(context.Background(), tracestoretest.TraceID(5, 5))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Spans.SpanCount() != 100 || len(tr.Warnings) != 1 || !strings.Contains(tr.Warnings[0], "150 spans") {
		t.Errorf("capped trace: %d spans, warnings %v", tr.Spans.SpanCount(), tr.Warnings)
	}
}

func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, Config{Dir: dir})
	base := tracestoretest.Base()
	if err := s.WriteTraces(context.Background(), tracestoretest.Fixture(base)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, Config{Dir: dir})
	ids, err := s.FindTraceIDs(context.Background(), tracestore.Query{Service: "frontend", Tags: map[string]string{"http.method": "GET"}})
	if err != nil || len(ids) != 2 {
		t.Errorf("after reopen: %v %v", ids, err)
	}
	svcs, _ := s.GetServices(context.Background())
	if len(svcs) != 5 {
		t.Errorf("services after reopen: %v", svcs)
	}
}

func TestClosed(t *testing.T) {
	s := openTest(t, Config{})
	s.Close()
	if err := s.WriteTraces(context.Background(), tracestoretest.Fixture(time.Now())); !errors.Is(err, tracestore.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	if _, err := s.GetTrace(context.Background(), tracestoretest.TraceBookinfo); !errors.Is(err, tracestore.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
}
