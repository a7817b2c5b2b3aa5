package pebblestore

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
)

// plan is how one search reads the indexes: which index range, and what
// the index entries do not already prove (and so needs the span read).
type plan struct {
	name string
	// prefix of a time-ordered index (after the bucket prefix), or of the
	// duration index when byDuration.
	prefix     []byte
	byDuration bool
	// needSpan: some predicate must be checked on the span itself.
	needSpan bool
}

// candidates lists the usable indexes for q, most specific first.
func candidatePlans(q *tracestore.Query) []plan {
	var out []plan
	residual := func(p plan, covered func() bool) plan {
		p.needSpan = !covered()
		return p
	}
	onlyKind := q.SpanKind == "" && q.RemoteService == "" && len(q.Annotations) == 0
	if q.Service != "" {
		tags := make([]string, 0, len(q.Tags)+1)
		for k := range q.Tags {
			tags = append(tags, k)
		}
		sort.Strings(tags)
		type kv struct{ k, v string }
		var tagKVs []kv
		if q.RemoteService != "" {
			tagKVs = append(tagKVs, kv{tracestore.AttrPeerService, q.RemoteService})
		}
		for _, k := range tags {
			tagKVs = append(tagKVs, kv{k, q.Tags[k]})
		}
		for _, t := range tagKVs {
			if len(t.k) > tracestore.MaxTagLen || len(t.v) > tracestore.MaxTagLen {
				continue
			}
			p := plan{name: "tag " + t.k, prefix: appendLP(appendLP(appendLP([]byte{secIndex, idxTag}, q.Service), t.k), t.v)}
			out = append(out, residual(p, func() bool {
				return q.Operation == "" && onlyKind && len(q.Tags) == 1 && q.RemoteService == ""
			}))
		}
		if q.Operation != "" {
			p := plan{name: "operation", prefix: appendLP(appendLP([]byte{secIndex, idxOp}, q.Service), q.Operation)}
			out = append(out, residual(p, func() bool { return len(q.Tags) == 0 && onlyKind }))
		}
		if q.DurationMin > 0 {
			p := plan{name: "duration", byDuration: true, prefix: appendLP(appendLP([]byte{secDuration}, q.Service), q.Operation)}
			out = append(out, residual(p, func() bool { return len(q.Tags) == 0 && onlyKind }))
		}
		p := plan{name: "service", prefix: appendLP([]byte{secIndex, idxService}, q.Service)}
		out = append(out, residual(p, func() bool { return q.Operation == "" && len(q.Tags) == 0 && onlyKind }))
		return out
	}
	p := plan{name: "time", prefix: []byte{secIndex, idxAll}}
	p.needSpan = q.Operation != "" || len(q.Tags) > 0 || !onlyKind
	return append(out, p)
}

// choosePlan picks the candidate whose range is smallest on disk in the
// newest bucket (Pebble's estimate, from sstable indexes). Data still in the
// memtable estimates as zero, so ties keep the static order above.
func (s *Store) choosePlan(q *tracestore.Query, newest uint32) plan {
	cands := candidatePlans(q)
	if len(cands) == 1 {
		return cands[0]
	}
	best, bestSize := 0, uint64(math.MaxUint64)
	for i, c := range cands {
		lo, hi := s.planRange(c, newest, q)
		size, err := s.db.EstimateDiskUsage(lo, hi)
		if err != nil {
			continue
		}
		if size < bestSize {
			best, bestSize = i, size
		}
	}
	return cands[best]
}

func (s *Store) planRange(p plan, bkt uint32, q *tracestore.Query) (lo, hi []byte) {
	base := append(bucketPrefix(nil, bkt), p.prefix...)
	if p.byDuration {
		lo = appendU64(slices.Clone(base), uint64(q.DurationMin))
		if q.DurationMax > 0 {
			hi = appendU64(slices.Clone(base), uint64(q.DurationMax)+1)
		} else {
			hi = prefixEnd(base)
		}
		return lo, hi
	}
	lo = appendU64(slices.Clone(base), uint64(max(q.StartMin.UnixNano(), 0)))
	hi = appendU64(slices.Clone(base), uint64(q.StartMax.UnixNano())+1)
	return lo, hi
}

// FindTraceIDs implements tracestore.Reader.
func (s *Store) FindTraceIDs(ctx context.Context, q tracestore.Query) ([]pcommon.TraceID, error) {
	return s.findTraceIDs(ctx, q)
}

// FindTraces implements tracestore.Reader.
func (s *Store) FindTraces(ctx context.Context, q tracestore.Query) ([]*tracestore.Trace, error) {
	ids, err := s.findTraceIDs(ctx, q)
	if err != nil {
		return nil, err
	}
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := make([]*tracestore.Trace, 0, len(ids))
	for _, id := range ids {
		t, err := s.getTrace(it, id)
		if err != nil {
			continue
		}
		out = append(out, t)
	}
	return out, ctx.Err()
}

func (s *Store) findTraceIDs(ctx context.Context, q tracestore.Query) ([]pcommon.TraceID, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	q, err := q.Normalize(s.cfg.Now(), s.cfg.MaxLookback)
	if err != nil {
		return nil, err
	}
	lo := s.bucketOf(uint64(max(q.StartMin.UnixNano(), 0)))
	hi := s.bucketOf(uint64(max(q.StartMax.UnixNano(), 0)))
	lo = max(lo, s.oldestBucket())
	buckets := s.bucketsDesc(lo, hi)
	if len(buckets) == 0 {
		return []pcommon.TraceID{}, nil
	}
	p := s.choosePlan(&q, buckets[0])

	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	sr := &searcher{s: s, q: &q, p: p, ctx: ctx, seen: map[pcommon.TraceID]bool{}, res: map[resKey]pcommon.Resource{}}
	for _, bkt := range buckets {
		done, err := sr.bucket(it, bkt)
		if err != nil {
			return nil, err
		}
		if done {
			break
		}
	}
	if sr.ids == nil {
		sr.ids = []pcommon.TraceID{}
	}
	return sr.ids, nil
}

type resKey struct {
	bkt   uint32
	trace pcommon.TraceID
	hash  uint64
}

type searcher struct {
	s       *Store
	q       *tracestore.Query
	p       plan
	ctx     context.Context
	seen    map[pcommon.TraceID]bool
	ids     []pcommon.TraceID
	scanned int
	res     map[resKey]pcommon.Resource
	um      ptrace.ProtoUnmarshaler
	key     []byte
}

// bucket scans one bucket; done reports the limit or the scan budget hit.
func (sr *searcher) bucket(it *pebble.Iterator, bkt uint32) (done bool, err error) {
	lo, hi := sr.s.planRange(sr.p, bkt, sr.q)
	it.SetBounds(lo, hi)
	if sr.p.byDuration {
		// Duration-ordered: gather the bucket's hits, then visit them newest
		// first like the time-ordered indexes.
		var hits []suffix
		for ok := it.First(); ok; ok = it.Next() {
			if sr.budget() {
				break
			}
			k := it.Key()
			sf, ok := parseSuffix(k)
			if !ok || len(k) < suffixLen+8 {
				continue
			}
			dur := binary.BigEndian.Uint64(k[len(k)-suffixLen-8:])
			if !sr.q.MatchTime(time.Unix(0, int64(sf.start)), time.Duration(dur)) || sr.seen[sf.trace] {
				continue
			}
			hits = append(hits, sf)
		}
		if err := it.Error(); err != nil {
			return false, err
		}
		order := make([]int, len(hits))
		for i := range order {
			order[i] = i
		}
		sort.Slice(order, func(a, b int) bool { return hits[order[a]].start > hits[order[b]].start })
		for _, i := range order {
			if sr.visit(bkt, hits[i]) {
				return true, nil
			}
		}
		return sr.scanned >= sr.s.cfg.MaxScan, nil
	}
	for ok := it.Last(); ok; ok = it.Prev() {
		if sr.budget() {
			return true, it.Error()
		}
		sf, ok := parseSuffix(it.Key())
		if !ok || sr.seen[sf.trace] {
			continue
		}
		dur, w := binary.Uvarint(it.Value())
		if w <= 0 || !sr.q.MatchTime(time.Unix(0, int64(sf.start)), time.Duration(dur)) {
			continue
		}
		if sr.visit(bkt, sf) {
			return true, nil
		}
	}
	return false, it.Error()
}

func (sr *searcher) budget() bool {
	sr.scanned++
	if sr.scanned&4095 == 0 && sr.ctx.Err() != nil {
		return true
	}
	return sr.scanned > sr.s.cfg.MaxScan
}

// visit checks the span if the plan needs it and records its trace; it
// reports whether the limit is reached.
func (sr *searcher) visit(bkt uint32, sf suffix) bool {
	if sr.seen[sf.trace] {
		return false
	}
	if sr.p.needSpan && !sr.matchSpan(bkt, sf) {
		return false
	}
	sr.seen[sf.trace] = true
	sr.ids = append(sr.ids, sf.trace)
	return len(sr.ids) >= sr.q.Limit
}

func (sr *searcher) matchSpan(bkt uint32, sf suffix) bool {
	sr.key = spanKey(sr.key[:0], bkt, sf.trace, sf.span, sf.kind, sf.start)
	v, closer, err := sr.s.db.Get(sr.key)
	if err != nil {
		return false
	}
	defer closer.Close()
	h, err := parseSpanValue(v)
	if err != nil {
		return false
	}
	td, err := sr.um.UnmarshalTraces(h.proto)
	if err != nil || td.SpanCount() != 1 {
		return false
	}
	sp := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
	rk := resKey{bkt, sf.trace, h.resHash}
	res, ok := sr.res[rk]
	if !ok {
		res = pcommon.NewResource()
		sr.key = resourceKey(sr.key[:0], bkt, sf.trace, h.resHash)
		if rv, c, err := sr.s.db.Get(sr.key); err == nil {
			if rtd, err := sr.um.UnmarshalTraces(rv); err == nil && rtd.ResourceSpans().Len() > 0 {
				rtd.ResourceSpans().At(0).Resource().CopyTo(res)
			}
			c.Close()
		}
		if len(sr.res) > 4096 {
			clear(sr.res)
		}
		sr.res[rk] = res
	}
	return sr.q.MatchAttrs(res, sp)
}

// GetDependencies implements tracestore.Reader. Buckets that are closed
// (older than one bucket width before now) and wholly inside the window are
// computed once and cached.
func (s *Store) GetDependencies(ctx context.Context, endTs time.Time, lookback time.Duration) ([]tracestore.DependencyLink, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if lookback <= 0 {
		return nil, fmt.Errorf("%w: lookback must be positive", tracestore.ErrBadQuery)
	}
	lookback = min(lookback, s.cfg.MaxLookback)
	from := endTs.Add(-lookback)
	lo := max(s.bucketOf(uint64(max(from.UnixNano(), 0))), s.oldestBucket())
	hi := s.bucketOf(uint64(max(endTs.UnixNano(), 0)))
	closedBefore := s.cfg.Now().Add(-s.cfg.BucketWidth)
	l := tracestore.NewLinker()
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for _, bkt := range s.bucketsDesc(lo, hi) {
		bs, be := s.bucketStart(bkt), s.bucketStart(bkt+1)
		whole := bs.After(from) && !be.After(endTs)
		cacheable := whole && be.Before(closedBefore)
		if cacheable {
			s.mu.RLock()
			links, ok := s.depCache[bkt]
			s.mu.RUnlock()
			if ok {
				l.Add(links)
				continue
			}
		}
		bl := tracestore.NewLinker()
		if err := s.linkBucket(ctx, it, bkt, from, endTs, bl); err != nil {
			return nil, err
		}
		links := bl.Links()
		if cacheable {
			s.mu.Lock()
			s.depCache[bkt] = links
			s.mu.Unlock()
		}
		l.Add(links)
	}
	return l.Links(), nil
}

func (s *Store) linkBucket(ctx context.Context, it *pebble.Iterator, bkt uint32, from, to time.Time, l *tracestore.Linker) error {
	prefix := append(bucketPrefix(nil, bkt), secTrace)
	it.SetBounds(prefix, prefixEnd(prefix))
	var cur pcommon.TraceID
	var spans []tracestore.LinkSpan
	lo, hi := uint64(max(from.UnixNano(), 0)), uint64(max(to.UnixNano(), 0))
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
		if n&8191 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		k := it.Key()[len(prefix):]
		if len(k) != 16+1+8+1+8 || k[16] != recSpan {
			continue
		}
		var tid pcommon.TraceID
		copy(tid[:], k[:16])
		if tid != cur {
			l.AddTrace(spans)
			spans = spans[:0]
			cur = tid
		}
		start := binary.BigEndian.Uint64(k[26:])
		if start <= lo || start > hi {
			continue
		}
		h, err := parseSpanValue(it.Value())
		if err != nil {
			continue
		}
		var sid pcommon.SpanID
		copy(sid[:], k[17:25])
		spans = append(spans, tracestore.LinkSpan{SpanID: sid, ParentID: h.parent, Kind: ptrace.SpanKind(k[25]), Service: h.service})
	}
	l.AddTrace(spans)
	return it.Error()
}
