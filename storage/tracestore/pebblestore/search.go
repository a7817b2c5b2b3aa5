package pebblestore

import (
	"bytes"
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
	stored, _, err := s.FindStoredTraces(ctx, q, nil)
	out := make([]*tracestore.Trace, 0, len(stored))
	for i := range stored {
		t, err := stored[i].Trace(func(_ int, err error) {
			s.cfg.Logger.Warn("corrupt trace chunk", "trace", stored[i].ID.String(), "err", err)
		})
		if err != nil {
			continue
		}
		out = append(out, t)
	}
	return out, err
}

// FindStoredTraces is FindTraces without decoding the spans, their chunks
// appended to arena (see GetStoredTrace).
func (s *Store) FindStoredTraces(ctx context.Context, q tracestore.Query, arena []byte) ([]tracestore.StoredTrace, []byte, error) {
	ids, err := s.findTraceIDs(ctx, q)
	if err != nil {
		return nil, arena, err
	}
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{})
	if err != nil {
		return nil, arena, err
	}
	defer it.Close()
	out := make([]tracestore.StoredTrace, 0, len(ids))
	for _, id := range ids {
		var st tracestore.StoredTrace
		if st, arena, err = s.storedTrace(it, id, arena); err != nil {
			continue
		}
		out = append(out, st)
	}
	return out, arena, ctx.Err()
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
	if ok, err := sr.hasStartKeys(it, bkt); err != nil {
		return false, err
	} else if ok {
		scanned := sr.scanned
		done, gaveUp, err := sr.newestFirst(bkt)
		if !gaveUp {
			return done, err
		}
		sr.scanned = scanned
	}
	return sr.whole(it, bkt)
}

// newestFirstBatches is how many batches a newest-first search reads
// before it reads the bucket whole instead. Spans reach meshlens seconds
// after they start, so the newest batches hold the latest starts and a
// search stops after a few; when it has not stopped after this many, write
// order is evidently not start order (a backfill or replay: every batch
// then bounds every older one with the same latest start), and reading the
// bucket in key order costs less per batch than seeking batch by batch.
// The batches already read are the extra cost of having tried.
const newestFirstBatches = 256

// newerFirst orders a bucket's matches: latest start first, ties by trace
// id so that an answer does not depend on the order batches were read in.
func newerFirst(aStart, bStart uint64, a, b pcommon.TraceID) int {
	if c := cmp.Compare(bStart, aStart); c != 0 {
		return c
	}
	return bytes.Compare(a[:], b[:])
}

// hasStartKeys reports whether every batch of the bucket has a start key,
// that is whether its oldest batch is no older than start keys.
func (sr *searcher) hasStartKeys(it *pebble.Iterator, bkt uint32) (bool, error) {
	prefix := append(bucketPrefix(sr.key[:0], bkt), secTable)
	it.SetBounds(prefix, prefixEnd(prefix))
	if !it.First() {
		return true, it.Error()
	}
	return binary.BigEndian.Uint64(it.Key()[len(prefix):]) >= sr.s.startKeysFrom, nil
}

// newestFirst searches a bucket batch by batch, newest first, keeping the
// matches that start latest, and stops once it has enough of them and no
// older batch holds a trace that starts later than the last one kept: the
// same answer as reading the whole bucket, whose cost grows with every
// trace of the service in the bucket (an hour at mesh rates is millions).
// A batch's start key holds the latest trace start of it and every older
// batch of the bucket, so that bound is one seek. With terms, only batches
// in every term's posting lists are read: the lists are walked backwards
// together, each skipping to the next batch the others have (a leapfrog
// intersection), so a rare term costs a seek per batch that has it.
func (sr *searcher) newestFirst(bkt uint32) (done, gaveUp bool, err error) {
	need := sr.q.Limit - len(sr.ids)
	type match struct {
		id     pcommon.TraceID
		latest uint64
	}
	var found []match
	// at locates a trace in found: a trace written in several batches is
	// placed by its latest matching entry, as whole places it.
	at := map[pcommon.TraceID]int{}
	keep := func() {
		slices.SortFunc(found, func(a, b match) int { return newerFirst(a.latest, b.latest, a.id, b.id) })
		for _, m := range found[min(need, len(found)):] {
			delete(at, m.id)
		}
		found = found[:min(need, len(found))]
		for i, m := range found {
			at[m.id] = i
		}
	}
	startIt, err := sr.s.db.NewIterWithContext(sr.ctx, &pebble.IterOptions{})
	if err != nil {
		return false, false, err
	}
	defer startIt.Close()
	startPrefix := append(bucketPrefix(nil, bkt), secStart)
	startIt.SetBounds(startPrefix, prefixEnd(startPrefix))
	// enough reports whether no batch at or before seq can change the kept
	// matches: the latest start of those batches, from the newest one's
	// start key, is below the last kept match's. (An older batch's trace
	// starting as late as the last kept one could still precede it, ties
	// going by trace id, hence the strict comparison.)
	enough := func(seq uint64) (bool, error) {
		if len(found) < need {
			return false, nil
		}
		keep()
		if !startIt.SeekLT(appendU64(append([]byte(nil), startPrefix...), seq+1)) {
			return true, startIt.Error() // no batch left
		}
		return startBound(startIt.Value()) < found[need-1].latest, nil
	}
	var tableIt *pebble.Iterator
	if tableIt, err = sr.s.db.NewIterWithContext(sr.ctx, &pebble.IterOptions{}); err != nil {
		return false, false, err
	}
	defer tableIt.Close()
	visits := 0
	visit := func(seq uint64, cur map[batchOrd]uint64) error {
		if visits++; visits > sr.s.newestFirstBatches {
			return errGiveUp
		}
		cands, err := sr.batchCandidates(tableIt, bkt, seq, cur)
		if err != nil {
			return err
		}
		for _, c := range cands {
			if sr.seen[c.entry.id] {
				continue
			}
			i, ok := at[c.entry.id]
			if ok && found[i].latest >= c.entry.maxStart {
				continue
			}
			if !c.exact && !sr.matchChunk(bkt, c) {
				continue
			}
			if ok {
				found[i].latest = c.entry.maxStart
				continue
			}
			at[c.entry.id] = len(found)
			found = append(found, match{c.entry.id, c.entry.maxStart})
		}
		return nil
	}
	if len(sr.p.terms) == 0 {
		// Every batch, newest first: the start keys list them.
		walk, err := sr.s.db.NewIterWithContext(sr.ctx, &pebble.IterOptions{LowerBound: startPrefix, UpperBound: prefixEnd(startPrefix)})
		if err != nil {
			return false, false, err
		}
		defer walk.Close()
		for ok := walk.Last(); ok && !sr.over(); ok = walk.Prev() {
			k := walk.Key()
			if len(k) != len(startPrefix)+8 {
				continue
			}
			seq := binary.BigEndian.Uint64(k[len(startPrefix):])
			stop, err := enough(seq)
			if err == nil && !stop {
				err = visit(seq, nil)
			}
			if err != nil {
				return false, errors.Is(err, errGiveUp), ignoreGiveUp(err)
			}
			if stop {
				break
			}
		}
		if err := walk.Error(); err != nil {
			return false, false, err
		}
	} else if err := sr.leapfrog(bkt, func(seq uint64, cur map[batchOrd]uint64) (bool, error) {
		if stop, err := enough(seq); err != nil || stop {
			return true, err
		}
		return false, visit(seq, cur)
	}); err != nil {
		return false, errors.Is(err, errGiveUp), ignoreGiveUp(err)
	}
	keep()
	for _, m := range found {
		sr.seen[m.id] = true
		sr.ids = append(sr.ids, m.id)
	}
	return len(sr.ids) >= sr.q.Limit || sr.over(), false, nil
}

// errGiveUp ends a newest-first search that has read newestFirstBatches
// batches without being able to stop.
var errGiveUp = errors.New("newest-first search gave up")

func ignoreGiveUp(err error) error {
	if errors.Is(err, errGiveUp) {
		return nil
	}
	return err
}

// leapfrog walks the posting lists of the plan's terms from the newest
// batch back, calling fn with each batch that every term lists and the
// postings they share (as in whole), until fn says stop.
func (sr *searcher) leapfrog(bkt uint32, fn func(seq uint64, cur map[batchOrd]uint64) (stop bool, err error)) error {
	its := make([]*pebble.Iterator, len(sr.p.terms))
	prefixes := make([][]byte, len(sr.p.terms))
	for i, term := range sr.p.terms {
		prefixes[i] = postingPrefix(nil, bkt, term)
		it, err := sr.s.db.NewIterWithContext(sr.ctx, &pebble.IterOptions{LowerBound: prefixes[i], UpperBound: prefixEnd(prefixes[i])})
		if err != nil {
			return err
		}
		defer it.Close()
		its[i] = it
	}
	seqAt := func(i int) (uint64, bool) {
		k := its[i].Key()
		if len(k) != len(prefixes[i])+8 {
			return 0, false
		}
		return binary.BigEndian.Uint64(k[len(prefixes[i]):]), true
	}
	valid := true
	for i := range its {
		valid = valid && its[i].Last()
	}
	var key []byte
	for valid && !sr.over() {
		// The batch every list may share next is the oldest of their
		// current ones; lists past it skip back to it.
		target := ^uint64(0)
		for i := range its {
			seq, ok := seqAt(i)
			if !ok {
				valid = its[i].Prev()
				target = 0
				break
			}
			target = min(target, seq)
		}
		if target == 0 {
			continue
		}
		all := true
		for i := range its {
			seq, _ := seqAt(i)
			if seq > target {
				key = appendU64(append(key[:0], prefixes[i]...), target+1)
				if valid = its[i].SeekLT(key); !valid {
					break
				}
				all = false
			}
		}
		if !valid || !all {
			continue
		}
		cur, err := sr.intersect(its, target)
		if err != nil {
			return err
		}
		if len(cur) > 0 {
			stop, err := fn(target, cur)
			if err != nil || stop {
				return err
			}
		}
		for i := range its {
			valid = valid && its[i].Prev()
		}
	}
	for _, it := range its {
		if err := it.Error(); err != nil {
			return err
		}
	}
	return nil
}

// intersect intersects the postings of one batch, at the current position
// of every term's iterator, as whole does for a bucket.
func (sr *searcher) intersect(its []*pebble.Iterator, seq uint64) (map[batchOrd]uint64, error) {
	var cur map[batchOrd]uint64
	for ti, term := range sr.p.terms {
		withDur := termHasDuration(term[0])
		next := map[batchOrd]uint64{}
		if err := sr.narrow(its[ti].Value(), seq, ti, withDur, cur, next); err != nil {
			sr.s.cfg.Logger.Warn("corrupt posting list", "seq", seq, "err", err)
		}
		cur = next
		if len(cur) == 0 {
			break
		}
	}
	return cur, nil
}

// narrow adds to next the postings of batch seq in v (term ti of the
// plan) that survive: past the duration bound and, after the first term,
// already in cur. A value is the longest duration behind a service or
// operation posting (µs, rounded up), ^0 until such a term is read.
func (sr *searcher) narrow(v []byte, seq uint64, ti int, withDur bool, cur, next map[batchOrd]uint64) error {
	return decodePostings(v, withDur, func(p posting) {
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
}

// whole searches every batch of the bucket at once (buckets written before
// start keys existed).
func (sr *searcher) whole(it *pebble.Iterator, bkt uint32) (done bool, err error) {
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
			if err := sr.narrow(it.Value(), seq, ti, withDur, cur, next); err != nil {
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
	slices.SortFunc(cands, func(a, b candidate) int {
		return newerFirst(a.entry.maxStart, b.entry.maxStart, a.entry.id, b.entry.id)
	})
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
	consider := func(seq uint64, e traceEntry, dUS uint64) { out = sr.consider(out, seq, e, dUS) }
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

// consider appends the trace of entry e of batch seq to out when its time
// range and longest duration (dUS: the term posting's, ^0 when none was
// read) can satisfy the query.
func (sr *searcher) consider(out []candidate, seq uint64, e traceEntry, dUS uint64) []candidate {
	q := sr.q
	if e.maxStart < sr.lo || e.minStart > sr.hi {
		return out
	}
	maxDur := e.maxDur
	exactDur := q.DurationMin == 0 || maxDur >= uint64(q.DurationMin)
	if dUS != ^uint64(0) {
		// The posting's duration (rounded up to µs) is of the spans
		// that gave the term, a tighter bound than the trace's.
		if dUS*1000 < uint64(q.DurationMin) {
			return out
		}
		exactDur = q.DurationMin == 0 || (dUS-1)*1000 >= uint64(q.DurationMin)
	} else if maxDur < uint64(q.DurationMin) {
		return out
	}
	exact := sr.p.attrsImplied && q.DurationMax == 0 && exactDur && e.minStart >= sr.lo && e.maxStart <= sr.hi
	return append(out, candidate{seq: seq, entry: e, exact: exact})
}

// batchCandidates is candidates for one batch: its traces in cur, or all
// of them when cur is nil (no terms).
func (sr *searcher) batchCandidates(it *pebble.Iterator, bkt uint32, seq uint64, cur map[batchOrd]uint64) ([]candidate, error) {
	key := tableKey(nil, bkt, seq)
	it.SetBounds(key, prefixEnd(key))
	if !it.First() {
		return nil, it.Error()
	}
	v := it.Value()
	var out []candidate
	if cur == nil {
		for ord := uint64(0); ord*traceEntryLen < uint64(len(v)); ord++ {
			if sr.budget() {
				break
			}
			e, _ := traceEntryAt(v, ord)
			out = sr.consider(out, seq, e, ^uint64(0))
		}
		return out, nil
	}
	for bo, d := range cur {
		if e, ok := traceEntryAt(v, uint64(bo.ord)); ok {
			out = sr.consider(out, seq, e, d)
		}
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
	err = chunkSpans(&sr.um, v, func(rs ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
		if !found && sr.q.MatchSpan(rs.Resource(), sp) {
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
