package pebblestore

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
)

// queryPlan is how a search reads a bucket: the terms whose posting lists
// are intersected (the service or operation term carries durations), and
// whether a candidate that passes the trace-table
// checks is a match without reading its spans.
type queryPlan struct {
	terms [][]byte
	// attrsImplied: every predicate other than time and duration is
	// implied by the terms.
	attrsImplied bool
}

func planQuery(q *tracestore.Query) queryPlan {
	var p queryPlan
	tag := func(k, v string) {
		if len(k) <= tracestore.MaxTagLen && len(v) <= tracestore.MaxTagLen {
			p.terms = append(p.terms, appendLP(appendLP([]byte{termTag}, k), v))
		}
	}
	keys := make([]string, 0, len(q.Tags))
	for k := range q.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		tag(k, q.Tags[k])
	}
	if q.RemoteService != "" {
		tag(tracestore.AttrPeerService, q.RemoteService)
	}
	if k, err := tracestore.ParseKind(q.SpanKind); err == nil && tracestore.KindName(k) != "" {
		tag("span.kind", tracestore.KindName(k))
	}
	// The service (or service+operation) term goes last: tag values are
	// usually rarer than a service, and an intersection stops as soon as
	// it is empty, so a unique tag costs one short range per bucket.
	if q.Service != "" {
		t := appendLP([]byte{termService}, q.Service)
		if q.Operation != "" {
			t[0] = termOp
			t = appendLP(t, q.Operation)
		}
		p.terms = append(p.terms, t)
	}
	p.attrsImplied = len(q.Tags) == 0 && q.RemoteService == "" && q.SpanKind == "" && len(q.Annotations) == 0 &&
		(q.Service != "" || q.Operation == "")
	return p
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
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	sr := &searcher{s: s, q: &q, p: planQuery(&q), ctx: ctx, seen: map[pcommon.TraceID]bool{},
		lo: uint64(max(q.StartMin.UnixNano(), 0)), hi: uint64(max(q.StartMax.UnixNano(), 0))}
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

type searcher struct {
	s       *Store
	q       *tracestore.Query
	p       queryPlan
	ctx     context.Context
	lo, hi  uint64
	seen    map[pcommon.TraceID]bool
	ids     []pcommon.TraceID
	scanned int
	um      ptrace.ProtoUnmarshaler
	key     []byte
}

// batchOrd is one trace of one batch.
type batchOrd struct {
	seq uint64
	ord uint32
}

// candidate is a trace of one batch that the posting lists and the trace
// table do not rule out.
type candidate struct {
	seq   uint64
	entry traceEntry
	exact bool
}

// bucket searches one bucket; done reports the limit or the scan budget hit.
func (sr *searcher) bucket(it *pebble.Iterator, bkt uint32) (done bool, err error) {
	// cur maps the surviving traces to the longest duration behind the
	// service or operation term's posting (µs, rounded up), ^0 when no
	// such term has been read.
	var cur map[batchOrd]uint64
	for ti, term := range sr.p.terms {
		withDur := termHasDuration(term[0])
		next := map[batchOrd]uint64{}
		prefix := postingPrefix(sr.key[:0], bkt, term)
		it.SetBounds(prefix, prefixEnd(prefix))
		for ok := it.First(); ok; ok = it.Next() {
			k := it.Key()
			if len(k) != len(prefix)+8 {
				continue
			}
			seq := binary.BigEndian.Uint64(k[len(prefix):])
			err := decodePostings(it.Value(), withDur, func(p posting) {
				if sr.budget() {
					return
				}
				if withDur && p.durUS*1000 < uint64(sr.q.DurationMin) {
					return
				}
				bo := batchOrd{seq, p.ord}
				d, ok := cur[bo]
				switch {
				case ti == 0:
					d = ^uint64(0)
				case !ok:
					return
				}
				if withDur {
					d = p.durUS
				}
				next[bo] = d
			})
			if err != nil {
				sr.s.cfg.Logger.Warn("corrupt posting list", "bucket", bkt, "err", err)
			}
		}
		if err := it.Error(); err != nil {
			return false, err
		}
		cur = next
		if len(cur) == 0 || sr.over() {
			return sr.over(), nil
		}
	}
	cands, err := sr.candidates(it, bkt, cur)
	if err != nil {
		return false, err
	}
	slices.SortFunc(cands, func(a, b candidate) int { return cmp.Compare(b.entry.maxStart, a.entry.maxStart) })
	for _, c := range cands {
		if sr.seen[c.entry.id] {
			continue
		}
		if !c.exact && !sr.matchChunk(bkt, c) {
			continue
		}
		sr.seen[c.entry.id] = true
		sr.ids = append(sr.ids, c.entry.id)
		if len(sr.ids) >= sr.q.Limit {
			return true, nil
		}
	}
	return sr.over(), nil
}

// candidates reads the trace tables of the batches in cur (every batch of
// the bucket when the plan has no terms) and keeps the traces whose time
// range and longest duration can satisfy the query.
func (sr *searcher) candidates(it *pebble.Iterator, bkt uint32, cur map[batchOrd]uint64) ([]candidate, error) {
	var out []candidate
	q := sr.q
	consider := func(seq uint64, e traceEntry, dUS uint64) {
		if e.maxStart < sr.lo || e.minStart > sr.hi {
			return
		}
		maxDur := e.maxDur
		exactDur := q.DurationMin == 0 || maxDur >= uint64(q.DurationMin)
		if dUS != ^uint64(0) {
			// The posting's duration (rounded up to µs) is of the spans
			// that gave the term, a tighter bound than the trace's.
			if dUS*1000 < uint64(q.DurationMin) {
				return
			}
			exactDur = q.DurationMin == 0 || (dUS-1)*1000 >= uint64(q.DurationMin)
		} else if maxDur < uint64(q.DurationMin) {
			return
		}
		exact := sr.p.attrsImplied && q.DurationMax == 0 && exactDur && e.minStart >= sr.lo && e.maxStart <= sr.hi
		out = append(out, candidate{seq: seq, entry: e, exact: exact})
	}
	if len(sr.p.terms) == 0 {
		prefix := append(bucketPrefix(sr.key[:0], bkt), secTable)
		it.SetBounds(prefix, prefixEnd(prefix))
		for ok := it.First(); ok; ok = it.Next() {
			k := it.Key()
			if len(k) != len(prefix)+8 {
				continue
			}
			seq := binary.BigEndian.Uint64(k[len(prefix):])
			v := it.Value()
			for ord := uint64(0); ord*traceEntryLen < uint64(len(v)); ord++ {
				if sr.budget() {
					return out, it.Error()
				}
				e, _ := traceEntryAt(v, ord)
				consider(seq, e, ^uint64(0))
			}
		}
		return out, it.Error()
	}
	bySeq := map[uint64][]batchOrd{}
	for bo := range cur {
		bySeq[bo.seq] = append(bySeq[bo.seq], bo)
	}
	for seq, bos := range bySeq {
		sr.key = tableKey(sr.key[:0], bkt, seq)
		v, closer, err := sr.s.db.Get(sr.key)
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read trace table: %w", err)
		}
		for _, bo := range bos {
			if e, ok := traceEntryAt(v, uint64(bo.ord)); ok {
				consider(seq, e, cur[bo])
			}
		}
		closer.Close()
	}
	return out, nil
}

func (sr *searcher) budget() bool {
	sr.scanned++
	if sr.scanned&4095 == 0 && sr.ctx.Err() != nil {
		sr.scanned = sr.s.cfg.MaxScan + 1
	}
	return sr.scanned > sr.s.cfg.MaxScan
}

func (sr *searcher) over() bool { return sr.scanned > sr.s.cfg.MaxScan }

// matchChunk reads the candidate's chunk and reports whether one of its
// spans satisfies the query.
func (sr *searcher) matchChunk(bkt uint32, c candidate) bool {
	sr.key = chunkKey(sr.key[:0], bkt, c.entry.id, c.seq)
	v, closer, err := sr.s.db.Get(sr.key)
	if err != nil {
		return false
	}
	defer closer.Close()
	found := false
	err = chunkSpans(&sr.um, v, func(r spanRef) {
		if !found && sr.q.MatchSpan(r.rs.Resource(), r.span) {
			found = true
		}
	})
	if err != nil {
		sr.s.cfg.Logger.Warn("corrupt trace chunk", "trace", c.entry.id.String(), "err", err)
	}
	return found
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

// linkBucket reads every chunk of the bucket; a trace's chunks are
// adjacent, so its spans are linked once all its chunks are read.
func (s *Store) linkBucket(ctx context.Context, it *pebble.Iterator, bkt uint32, from, to time.Time, l *tracestore.Linker) error {
	prefix := append(bucketPrefix(nil, bkt), secChunk)
	it.SetBounds(prefix, prefixEnd(prefix))
	var cur pcommon.TraceID
	spans := map[tracestore.SpanKey]tracestore.LinkSpan{}
	var list []tracestore.LinkSpan
	flush := func() {
		list = list[:0]
		for _, sp := range spans {
			list = append(list, sp)
		}
		l.AddTrace(list)
		clear(spans)
	}
	lo, hi := uint64(max(from.UnixNano(), 0)), uint64(max(to.UnixNano(), 0))
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
		if n&1023 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		k := it.Key()[len(prefix):]
		if len(k) != 16+8 {
			continue
		}
		var tid pcommon.TraceID
		copy(tid[:], k[:16])
		if tid != cur {
			flush()
			cur = tid
		}
		_, err := parseChunk(it.Value(), func(r linkRec, svc string) {
			if r.start <= lo || r.start > hi {
				return
			}
			k := tracestore.SpanKey{TraceID: tid, SpanID: r.span, Kind: ptrace.SpanKind(r.kind), Start: pcommon.Timestamp(r.start)}
			spans[k] = tracestore.LinkSpan{SpanID: r.span, ParentID: r.parent, Kind: ptrace.SpanKind(r.kind), Service: svc}
		})
		if err != nil {
			s.cfg.Logger.Warn("corrupt trace chunk", "trace", tid.String(), "err", err)
		}
	}
	flush()
	return it.Error()
}
