package cassandra

import (
	"fmt"
	"slices"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
)

// WriteConfig is what statement generation needs.
type WriteConfig struct {
	Keyspace string
	Shards   int
	// TTL of span and index rows; MetadataTTL of the services, operations,
	// remote services and tag values rows.
	TTL, MetadataTTL time.Duration
	// AutocompleteKeys are the tag keys whose values go to tag_values.
	AutocompleteKeys []string
	// MaxBatchRows and MaxBatchBytes bound one UNLOGGED batch (Cassandra
	// fails batches over batch_size_fail_threshold, 50 KiB by default).
	MaxBatchRows, MaxBatchBytes int
	// SoloPartitionRows: a partition with at least this many rows in a
	// write gets batches of its own (single-partition batches, routed to
	// its replicas); smaller ones are packed together.
	SoloPartitionRows int
}

// rowBuilder turns spans into insert statements.
type rowBuilder struct {
	cfg   WriteConfig
	cql   map[*Table]string
	stmts []Stmt
	meta  map[string]bool
	tags  map[[2]string]bool
}

func newRowBuilder(cfg WriteConfig, cql map[*Table]string) *rowBuilder {
	return &rowBuilder{cfg: cfg, cql: cql, meta: map[string]bool{}, tags: map[[2]string]bool{}}
}

// insertCQL returns the insert CQL of every table of ks.
func insertCQL(ks string) map[*Table]string {
	m := map[*Table]string{}
	for _, t := range Tables {
		m[t] = InsertCQL(ks, t)
	}
	return m
}

func (b *rowBuilder) add(t *Table, ttl time.Duration, row ...any) {
	b.stmts = append(b.stmts, Stmt{Table: t, CQL: b.cql[t], Row: row, TTL: int32(ttl / time.Second)})
}

// addMeta adds a metadata row once per write.
func (b *rowBuilder) addMeta(t *Table, row ...any) {
	st := Stmt{Table: t, Row: row}
	k := st.PartitionKey() + "|" + fmt.Sprint(row[len(t.Partition):]...)
	if b.meta[k] {
		return
	}
	b.meta[k] = true
	b.add(t, b.cfg.MetadataTTL, row...)
}

// Rows returns the insert statements for td: per span one spans row, one
// row in each of the service, operation and duration indexes, one tag
// index row per distinct indexable tag, and the metadata rows (deduplicated
// within the write).
func Rows(cfg WriteConfig, cql map[*Table]string, td ptrace.Traces) ([]Stmt, error) {
	b := newRowBuilder(cfg, cql)
	b.stmts = make([]Stmt, 0, td.SpanCount()*18)
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		svc := tracestore.ServiceName(rs.Resource())
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j)
			enc := newSpanEncoder(rs.Resource(), ss.Scope())
			for k := 0; k < ss.Spans().Len(); k++ {
				if err := b.span(svc, enc, rs.Resource(), ss.Spans().At(k)); err != nil {
					return nil, err
				}
			}
		}
	}
	return b.stmts, nil
}

var spanMarshaler = &ptrace.ProtoMarshaler{}

// spanEncoder encodes spans of one resource and scope, each with its
// resource and scope, as a one-span ptrace protobuf; the resource and
// scope are copied once per encoder, not once per span.
type spanEncoder struct {
	td    ptrace.Traces
	spans ptrace.SpanSlice
}

func newSpanEncoder(res pcommon.Resource, sc pcommon.InstrumentationScope) *spanEncoder {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	res.CopyTo(rs.Resource())
	ss := rs.ScopeSpans().AppendEmpty()
	sc.CopyTo(ss.Scope())
	ss.Spans().AppendEmpty()
	return &spanEncoder{td: td, spans: ss.Spans()}
}

func (e *spanEncoder) encode(sp ptrace.Span) ([]byte, error) {
	sp.CopyTo(e.spans.At(0))
	return spanMarshaler.MarshalTraces(e.td)
}

// encodeSpan encodes one span with its resource and scope.
func encodeSpan(res pcommon.Resource, sc pcommon.InstrumentationScope, sp ptrace.Span) ([]byte, error) {
	return newSpanEncoder(res, sc).encode(sp)
}

func (b *rowBuilder) span(svc string, enc *spanEncoder, res pcommon.Resource, sp ptrace.Span) error {
	tid := sp.TraceID()
	if tid.IsEmpty() {
		return fmt.Errorf("span %q of service %q has an empty trace id", sp.Name(), svc)
	}
	blob, err := enc.encode(sp)
	if err != nil {
		return fmt.Errorf("encode span: %w", err)
	}
	start := sp.StartTimestamp().AsTime()
	// Each value is boxed once and shared by the rows of the span.
	var (
		st     any = int64(sp.StartTimestamp())
		bkt    any = Bucket(start)
		day        = Day(start)
		shard  any = Shard(tid, b.cfg.Shards)
		trace  any = append([]byte(nil), tid[:]...)
		sid    any = spanBytes(sp.SpanID())
		kind   any = int8(sp.Kind())
		dur    any = int64(tracestore.Duration(sp))
		parent any = spanBytes(sp.ParentSpanID())
		svcv   any = svc
		name   any = sp.Name()
	)
	b.add(TableSpans, b.cfg.TTL, trace, sid, kind, st, svcv, parent, blob)
	b.add(TableServiceIndex, b.cfg.TTL, svcv, bkt, shard, st, trace, sid, kind, dur, parent)
	b.add(TableOperationIndex, b.cfg.TTL, svcv, name, bkt, shard, st, trace, sid, kind, dur)
	b.add(TableDurationIndex, b.cfg.TTL, svcv, bkt, shard, dur, st, trace, sid, kind, name)
	clear(b.tags)
	tracestore.ForEachTag(res, sp, func(k, v string) bool {
		if len(k) > tracestore.MaxTagLen || len(v) > tracestore.MaxTagLen || b.tags[[2]string{k, v}] {
			return true
		}
		b.tags[[2]string{k, v}] = true
		b.add(TableTagIndex, b.cfg.TTL, svcv, k, v, bkt, shard, st, trace, sid, kind, dur)
		return true
	})
	b.addMeta(TableServices, day, svc)
	b.addMeta(TableOperations, svc, day, int8(sp.Kind()), sp.Name())
	if v, ok := sp.Attributes().Get(tracestore.AttrPeerService); ok && v.AsString() != "" {
		b.addMeta(TableRemoteServices, svc, day, v.AsString())
	}
	for _, key := range b.cfg.AutocompleteKeys {
		if v, ok := sp.Attributes().Get(key); ok {
			b.addMeta(TableTagValues, key, day, v.AsString())
		}
	}
	return nil
}

func spanBytes(id pcommon.SpanID) []byte { return append([]byte(nil), id[:]...) }

// stmtBytes estimates the size a statement adds to a batch.
func stmtBytes(s *Stmt) int {
	n := 16
	for _, v := range s.Row {
		switch v := v.(type) {
		case string:
			n += len(v) + 4
		case []byte:
			n += len(v) + 4
		default:
			n += 12
		}
	}
	return n
}

// Batches groups insert statements into UNLOGGED batches: every partition
// with at least SoloPartitionRows rows gets batches of its own (a
// single-partition batch is applied atomically by its replicas and routed
// token-aware); the remaining rows are packed, in partition order, into
// batches of at most MaxBatchRows rows and MaxBatchBytes bytes. A retried
// batch rewrites the same primary keys, so retries never duplicate spans.
func Batches(cfg WriteConfig, stmts []Stmt) [][]Stmt {
	byPart := make(map[string][]int32, len(stmts)/2)
	order := make([]string, 0, len(stmts)/2)
	for i := range stmts {
		k := stmts[i].PartitionKey()
		idx, ok := byPart[k]
		if !ok {
			order = append(order, k)
		}
		byPart[k] = append(idx, int32(i))
	}
	slices.Sort(order)
	// The batches are sub-slices of one reordered copy of stmts.
	sorted := make([]Stmt, 0, len(stmts))
	var out [][]Stmt
	start, curBytes := 0, 0
	flush := func() {
		if len(sorted) > start {
			out = append(out, sorted[start:len(sorted):len(sorted)])
			start, curBytes = len(sorted), 0
		}
	}
	pack := func(rows []int32) {
		for _, i := range rows {
			n := stmtBytes(&stmts[i])
			if len(sorted) > start && (len(sorted)-start >= cfg.MaxBatchRows || curBytes+n > cfg.MaxBatchBytes) {
				flush()
			}
			sorted = append(sorted, stmts[i])
			curBytes += n
		}
	}
	small := make([]int32, 0, len(stmts))
	for _, k := range order {
		rows := byPart[k]
		if len(rows) >= cfg.SoloPartitionRows {
			pack(rows)
			flush()
			continue
		}
		small = append(small, rows...)
	}
	pack(small)
	flush()
	return out
}
