package cassandra

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

func TestPlanFind(t *testing.T) {
	end := time.Date(2026, 11, 27, 10, 30, 0, 0, time.UTC)
	ms := time.Millisecond
	norm := func(q tracestore.Query) tracestore.Query {
		q, err := q.Normalize(end, 72*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	for _, tc := range []struct {
		name     string
		q        tracestore.Query
		services []string
		table    *Table
		verify   bool
		buckets  int
		// partition of the first select of the newest bucket
		part  []any
		where []Cond
		cql   string
	}{
		{name: "service, 90 minutes", q: tracestore.Query{Service: "a", StartMin: end.Add(-90 * time.Minute)},
			table: TableServiceIndex, buckets: 2, part: []any{"a", Bucket(end), int8(0)},
			where: []Cond{{"start_time", ">=", BucketStart(Bucket(end)).UnixNano()}, {"start_time", "<=", end.UnixNano()}},
			cql:   "SELECT start_time, trace_id, span_id, span_kind, duration FROM ks.service_index WHERE service = ? AND bucket = ? AND shard = ? AND start_time >= ? AND start_time <= ?"},
		{name: "service, default lookback is 72h", q: tracestore.Query{Service: "a"}, table: TableServiceIndex, buckets: 73,
			part: []any{"a", Bucket(end), int8(0)}},
		{name: "operation", q: tracestore.Query{Service: "a", Operation: "GET /", StartMin: end.Add(-time.Minute)},
			table: TableOperationIndex, buckets: 1, part: []any{"a", "GET /", Bucket(end), int8(0)},
			cql: "SELECT start_time, trace_id, span_id, span_kind, duration FROM ks.operation_index WHERE service = ? AND operation = ? AND bucket = ? AND shard = ? AND start_time >= ? AND start_time <= ?"},
		{name: "tag with duration: tag index, duration from the row", q: tracestore.Query{Service: "a", Tags: map[string]string{"k": "v"}, DurationMin: 5 * ms, StartMin: end.Add(-time.Minute)},
			table: TableTagIndex, buckets: 1, part: []any{"a", "k", "v", Bucket(end), int8(0)}},
		{name: "error tag and another: the other is read", q: tracestore.Query{Service: "a", Tags: map[string]string{"error": "true", "http.url": "/x"}, StartMin: end.Add(-time.Minute)},
			table: TableTagIndex, verify: true, buckets: 1, part: []any{"a", "http.url", "/x", Bucket(end), int8(0)}},
		{name: "long tag value is filtered, not indexed", q: tracestore.Query{Service: "a", Tags: map[string]string{"k": string(make([]byte, 300))}, StartMin: end.Add(-time.Minute)},
			table: TableServiceIndex, verify: true, buckets: 1, part: []any{"a", Bucket(end), int8(0)}},
		{name: "duration range", q: tracestore.Query{Service: "a", DurationMin: 5 * ms, DurationMax: 9 * ms, StartMin: end.Add(-time.Minute)},
			table: TableDurationIndex, buckets: 1, part: []any{"a", Bucket(end), int8(0)},
			where: []Cond{{"duration", ">=", int64(5 * ms)}, {"duration", "<=", int64(9 * ms)}},
			cql:   "SELECT start_time, trace_id, span_id, span_kind, duration FROM ks.duration_index WHERE service = ? AND bucket = ? AND shard = ? AND duration >= ? AND duration <= ?"},
		{name: "operation+tag", q: tracestore.Query{Service: "a", Operation: "op", Tags: map[string]string{"k": "v"}, StartMin: end.Add(-time.Minute)},
			table: TableTagIndex, verify: true, buckets: 1, part: []any{"a", "k", "v", Bucket(end), int8(0)}},
		{name: "span kind needs the span", q: tracestore.Query{Service: "a", SpanKind: "client", StartMin: end.Add(-time.Minute)},
			table: TableServiceIndex, verify: true, buckets: 1, part: []any{"a", Bucket(end), int8(0)}},
		{name: "no service: fan out over services", q: tracestore.Query{Tags: map[string]string{"k": "v"}, StartMin: end.Add(-time.Minute)}, services: []string{"x", "y"},
			table: TableTagIndex, buckets: 1, part: []any{"x", "k", "v", Bucket(end), int8(0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := norm(tc.q)
			p := PlanFind("ks", 4, q, tc.services)
			if p.Index != tc.table || p.Verify != tc.verify {
				t.Errorf("index %s verify %v, want %s %v", p.Index.Name, p.Verify, tc.table.Name, tc.verify)
			}
			if len(p.Buckets) != tc.buckets {
				t.Fatalf("%d buckets, want %d", len(p.Buckets), tc.buckets)
			}
			nsvc := max(1, len(tc.services))
			for i, b := range p.Buckets {
				if i > 0 && b.Bucket != p.Buckets[i-1].Bucket-1 {
					t.Errorf("buckets not newest first: %d after %d", b.Bucket, p.Buckets[i-1].Bucket)
				}
				if len(b.Stmts) != 4*nsvc {
					t.Errorf("bucket %d: %d selects, want %d (shards × services)", b.Bucket, len(b.Stmts), 4*nsvc)
				}
				if !Partitioned(b.Stmts) {
					t.Errorf("bucket %d: a select leaves the partition key unbound", b.Bucket)
				}
				for _, s := range b.Stmts {
					if s.Partition[len(s.Partition)-2] != b.Bucket {
						t.Errorf("select %v outside its bucket %d", s.Partition, b.Bucket)
					}
				}
			}
			first := p.Buckets[0].Stmts[0]
			if fmt.Sprint(first.Partition) != fmt.Sprint(tc.part) {
				t.Errorf("partition %v, want %v", first.Partition, tc.part)
			}
			if tc.where != nil && !slices.Equal(first.Where, tc.where) {
				t.Errorf("where %v, want %v", first.Where, tc.where)
			}
			if tc.cql != "" && first.CQL != tc.cql {
				t.Errorf("cql\n%s\nwant\n%s", first.CQL, tc.cql)
			}
			if len(first.Values()) != len(first.Partition)+len(first.Where) {
				t.Errorf("bind values %v do not match markers", first.Values())
			}
			// The last bucket is clipped at the window start.
			last := p.Buckets[len(p.Buckets)-1].Stmts[0]
			if last.Where[0].Col == "start_time" && last.Where[0].Value.(int64) != q.StartMin.UnixNano() {
				t.Errorf("oldest bucket starts at %v, want window start %v", last.Where[0].Value, q.StartMin.UnixNano())
			}
		})
	}
}

func TestPlanMetadataAndTrace(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	days := PlanDays(now.Add(-72*time.Hour), now)
	if len(days) != 4 || days[0] != Day(now) {
		t.Errorf("days = %v", days)
	}
	for _, set := range [][]Stmt{PlanServices("ks", days), PlanOperations("ks", "a", 2, days), PlanRemoteServices("ks", "a", days),
		PlanTagValues("ks", "k", days), {PlanTrace("ks", make([]byte, 16), 10)},
		PlanDependencies("ks", 4, []string{"a", "b"}, now.Add(-time.Hour), now)} {
		if !Partitioned(set) {
			t.Errorf("%s: unbound partition key", set[0].Table.Name)
		}
	}
	if got := PlanOperations("ks", "a", 2, days)[0].CQL; got != "SELECT span_kind, operation FROM ks.operations WHERE service = ? AND day = ? AND span_kind = ?" {
		t.Errorf("operations cql %s", got)
	}
	if n := len(PlanDependencies("ks", 4, []string{"a", "b"}, now.Add(-time.Hour), now)); n != 2*2*4 {
		t.Errorf("dependencies over 1h on a bucket edge: %d selects, want 16", n)
	}
	if got := PlanTrace("ks", make([]byte, 16), 10).CQL; got != "SELECT span_id, span_kind, start_time, span FROM ks.spans WHERE trace_id = ? LIMIT ?" {
		t.Errorf("trace cql %s", got)
	}
}

// TestSelectsAreExecutedAsPlanned runs a search on the fake and checks it
// read exactly the planned partitions: no scan outside the plan.
func TestSelectsAreExecutedAsPlanned(t *testing.T) {
	f := newFakeSession()
	s, err := New(f, Config{Keyspace: "ks"})
	if err != nil {
		t.Fatal(err)
	}
	base := tracestoretest.Base()
	if err := s.WriteTraces(context.Background(), tracestoretest.Fixture(base)); err != nil {
		t.Fatal(err)
	}
	f.record = true
	q := tracestore.Query{Service: "frontend", Tags: map[string]string{"http.method": "GET"}, StartMin: base.Add(-time.Minute), StartMax: base.Add(time.Minute)}
	if _, err := s.FindTraceIDs(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	nq, _ := q.Normalize(time.Now(), s.cfg.MaxLookback)
	var want []string
	for _, b := range PlanFind("ks", 4, nq, nil).Buckets {
		for _, st := range b.Stmts {
			want = append(want, st.PartitionKey())
		}
	}
	var got []string
	for _, st := range f.log {
		got = append(got, st.PartitionKey())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("read partitions\n%v\nwant\n%v", got, want)
	}
}

func TestRowsAndBatches(t *testing.T) {
	cfg := WriteConfig{Keyspace: "ks", Shards: 4, TTL: time.Hour, MetadataTTL: 2 * time.Hour, MaxBatchRows: 64, MaxBatchBytes: 40 << 10, SoloPartitionRows: 8,
		AutocompleteKeys: []string{"http.method"}}
	td := tracestoretest.Fixture(tracestoretest.Base())
	stmts, err := Rows(cfg, insertCQL("ks"), td)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, s := range stmts {
		count[s.Table.Name]++
		if len(s.Row) != len(s.Table.Columns()) {
			t.Errorf("%s row has %d values", s.Table.Name, len(s.Row))
		}
		wantTTL := int32(3600)
		if !slices.Contains([]*Table{TableSpans, TableServiceIndex, TableOperationIndex, TableTagIndex, TableDurationIndex}, s.Table) {
			wantTTL = 7200
		}
		if s.TTL != wantTTL {
			t.Errorf("%s TTL %d, want %d", s.Table.Name, s.TTL, wantTTL)
		}
	}
	n := td.SpanCount()
	for _, tb := range []*Table{TableSpans, TableServiceIndex, TableOperationIndex, TableDurationIndex} {
		if count[tb.Name] != n {
			t.Errorf("%s: %d rows for %d spans", tb.Name, count[tb.Name], n)
		}
	}
	if count["services"] != 5 || count["tag_values"] != 2 || count["remote_services"] != 3 {
		t.Errorf("metadata rows %v (want one per distinct value)", count)
	}
	batches := Batches(cfg, stmts)
	total := 0
	for _, b := range batches {
		total += len(b)
		if len(b) > cfg.MaxBatchRows {
			t.Errorf("batch of %d rows", len(b))
		}
	}
	if total != len(stmts) {
		t.Errorf("batches hold %d rows of %d", total, len(stmts))
	}
	if len(batches) >= n {
		t.Errorf("%d batches for %d spans: want fewer statements than spans", len(batches), n)
	}
	// Byte bound.
	cfg.MaxBatchBytes = 600
	for _, b := range Batches(cfg, stmts) {
		sz := 0
		for i := range b {
			sz += stmtBytes(&b[i])
		}
		if len(b) > 1 && sz > 600 {
			t.Errorf("batch of %d bytes over the 600-byte bound", sz)
		}
	}
	// A span with an empty trace id is an error naming it.
	bad := ptrace.NewTraces()
	bad.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("nameless")
	if _, err := Rows(cfg, insertCQL("ks"), bad); err == nil {
		t.Error("empty trace id accepted")
	}
}

// TestRetriedWriteDoesNotDuplicate: a batch that fails is retried by the
// caller; the rewrite lands on the same primary keys.
func TestRetriedWriteDoesNotDuplicate(t *testing.T) {
	f := newFakeSession()
	s, err := New(f, Config{Keyspace: "ks", MaxInflightBatches: 1})
	if err != nil {
		t.Fatal(err)
	}
	td := tracestoretest.Fixture(tracestoretest.Base())
	ctx := context.Background()
	f.failNext = true
	if err := s.WriteTraces(ctx, td); err == nil {
		t.Fatal("failed batch not reported")
	}
	if err := s.WriteTraces(ctx, td); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteTraces(ctx, td); err != nil {
		t.Fatal(err)
	}
	rows := 0
	for _, p := range f.tables["spans"] {
		rows += len(p.rows)
	}
	if rows != td.SpanCount() {
		t.Errorf("spans table holds %d rows after a failed write and two retries, want %d", rows, td.SpanCount())
	}
}

// blockingSession holds every batch until released: a slow Cassandra.
type blockingSession struct {
	*fakeSession
	release chan struct{}
}

func (b *blockingSession) ExecBatch(ctx context.Context, stmts []Stmt) error {
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.fakeSession.ExecBatch(ctx, stmts)
}

// TestBackpressure: with Cassandra stalled, WriteTraces blocks once
// MaxInflightBatches batches are outstanding and gives up with the
// caller's context instead of queueing without bound.
func TestBackpressure(t *testing.T) {
	bs := &blockingSession{fakeSession: newFakeSession(), release: make(chan struct{})}
	s, err := New(bs, Config{Keyspace: "ks", MaxInflightBatches: 2, MaxBatchRows: 4})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = s.WriteTraces(ctx, tracestoretest.Fixture(tracestoretest.Base()))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled write: err = %v, want deadline exceeded", err)
	}
	close(bs.release)
	if err := s.WriteTraces(context.Background(), tracestoretest.Fixture(tracestoretest.Base())); err != nil {
		t.Fatalf("after release: %v", err)
	}
}
