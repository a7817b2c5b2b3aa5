package pebblestore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
)

// ConsumeTraces implements pipeline.TraceConsumer.
func (s *Store) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	return s.WriteTraces(ctx, td)
}

// WriteTraces stores td durably: once it returns nil the spans survive a
// crash. Concurrent callers are grouped (see group): while one group's
// batch commits, the next callers add their spans to the next group, which
// is written as one batch with one sequence number. Pebble would already
// share a WAL sync between concurrent batches, but one batch per group
// also merges the posting lists of terms the callers share (service,
// operation, common tags) into one key each and inserts the whole group
// into the memtable in key order: fewer, sorted memtable inserts were most
// of the store's CPU with one batch per request.
func (s *Store) WriteTraces(ctx context.Context, td ptrace.Traces) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if td.SpanCount() == 0 {
		return nil
	}
	start := time.Now()
	req, err := newWireReq(td)
	if err != nil {
		return err
	}
	g, leader := s.join(td, req)
	if leader {
		<-g.turn
		s.commitGroup(g)
	}
	<-g.done
	if g.err != nil {
		return g.err
	}
	s.m.Latency.Observe(time.Since(start).Seconds())
	return nil
}

// walFailed is the background WAL fsync's failure, counted as a failed
// write.
func (s *Store) walFailed() error {
	if s.walSync == nil {
		return nil
	}
	err := s.walSync.failed()
	if err != nil {
		s.m.Failed.Inc()
	}
	return err
}

// group is the spans of the callers that arrived while the previous
// group's batch was committing. Its first caller is its leader: it waits
// for its turn (the previous group's commit to end), then writes the group
// as one batch. The group is bounded by the callers in flight, which the
// receivers' limiter bounds.
type group struct {
	w *writer
	// turn is closed when the leader may commit; done when the group's
	// batch is durable (or failed: err).
	turn, done chan struct{}
	err        error
}

// join adds td to the open group, opening one when there is none, and
// reports whether the caller leads it.
func (s *Store) join(td ptrace.Traces, req wireReq) (*group, bool) {
	s.gmu.Lock()
	defer s.gmu.Unlock()
	g, leader := s.open, false
	if g == nil {
		w, _ := s.writers.Get().(*writer)
		if w == nil {
			w = &writer{s: s, buckets: map[uint32]*bucketAcc{}, newMeta: map[string]uint32{}, intern: map[string]uint32{}}
		}
		g = &group{w: w, turn: make(chan struct{}), done: make(chan struct{})}
		s.open, leader = g, true
		if !s.committing {
			s.committing = true
			close(g.turn)
		}
	}
	g.w.add(td, req)
	return g, leader
}

// commitGroup closes g to new callers, writes it, wakes its callers and
// hands the turn to the next group, if one has opened meanwhile.
func (s *Store) commitGroup(g *group) {
	s.gmu.Lock()
	s.open = nil
	s.gmu.Unlock()
	g.err = s.write(g.w)
	g.w.release()
	close(g.done)
	s.gmu.Lock()
	if s.open != nil {
		close(s.open.turn)
	} else {
		s.committing = false
	}
	s.gmu.Unlock()
}

// write commits w's spans as one synced batch.
func (s *Store) write(w *writer) error {
	if err := s.walFailed(); err != nil {
		return err
	}
	if err := w.encode(s.seq.Add(1)); err != nil {
		s.m.Failed.Inc()
		return err
	}
	// Sized up front and retained by Pebble's batch pool up to
	// maxBatchRetained: growing a group's batch by doubling was 40% of the
	// bytes the store allocated.
	batch := s.db.NewBatchWithSize(w.batchSize(), pebble.WithMaxRetainedSizeBytes(maxBatchRetained))
	defer batch.Close()
	if err := w.flush(batch); err != nil {
		s.m.Failed.Inc()
		return err
	}
	if err := batch.Commit(s.wo); err != nil {
		s.m.Failed.Inc()
		return fmt.Errorf("commit %d spans: %w", w.spans, err)
	}
	if err := s.walFailed(); err != nil {
		// The fsync that failed may have been this commit's.
		return err
	}
	s.m.Spans.Add(float64(w.spans))
	s.m.Batches.Inc()
	s.mu.Lock()
	for b := range w.buckets {
		s.buckets[b] = struct{}{}
	}
	if len(s.meta)+len(w.newMeta) > maxMetaCache {
		clear(s.meta)
	}
	for k, b := range w.newMeta {
		s.meta[k] = b
	}
	s.mu.Unlock()
	return nil
}

// maxBatchRetained bounds the batch buffer Pebble's pool keeps between
// groups (a group of 32 requests of 100 spans is about 2 MB).
const maxBatchRetained = 16 << 20

// traceAcc gathers the spans of one trace in one bucket of a batch.
type traceAcc struct {
	entry traceEntry
	svcs  []string
	links []linkRec
	spans []spanAt
}

// bucketAcc gathers one bucket's part of a batch: its trace table and the
// posting lists of its terms.
type bucketAcc struct {
	traces []*traceAcc
	byID   map[pcommon.TraceID]uint32
	// terms maps an interned term to the index in posts of its newest
	// posting; each posting links to the term's previous one, so the
	// lists share one slice instead of a slice per term.
	terms map[uint32]int32
	posts []termPost
}

type termPost struct {
	posting
	prev int32
}

// wireReq is one request's protobuf and where its scopes and spans are in
// it (see wire.go), found before the caller joins a group.
type wireReq struct {
	proto  []byte
	scopes []wireScope
	spans  []wireRange
}

func newWireReq(td ptrace.Traces) (wireReq, error) {
	var r wireReq
	var err error
	if r.proto, err = (&ptrace.ProtoMarshaler{}).MarshalTraces(td); err != nil {
		return r, fmt.Errorf("encode spans: %w", err)
	}
	nss, nsp := 0, 0
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		nss += sss.Len()
		for j := 0; j < sss.Len(); j++ {
			nsp += sss.At(j).Spans().Len()
		}
	}
	if r.scopes, r.spans, err = walkTraces(r.proto, 0, make([]wireScope, 0, nss), make([]wireRange, 0, nsp)); err != nil {
		return r, fmt.Errorf("locate spans in their protobuf: %w", err)
	}
	if nss != len(r.scopes) || nsp != len(r.spans) {
		return r, fmt.Errorf("protobuf holds %d scopes and %d spans, the request %d and %d", len(r.scopes), len(r.spans), nss, nsp)
	}
	return r, nil
}

type writer struct {
	s       *Store
	buckets map[uint32]*bucketAcc
	newMeta map[string]uint32
	spans   int
	// reqs are the protobufs of the group's requests, which chunks are
	// spliced from; scopes locates their scopes.
	reqs   [][]byte
	scopes []wireScope
	// intern numbers the terms posted, across batches (bounded by
	// maxInterned): a term seen before costs no allocation.
	intern     map[string]uint32
	internKeys []string
	// free recycles trace and bucket accumulators.
	freeTraces  []*traceAcc
	freeBuckets []*bucketAcc
	postings    []posting
	term        []byte
	key         []byte
	val         []byte
	chunk       []byte
	proto       []byte
	buf         []byte
	kvs         []kvRange
	metaKey     []byte
}

const (
	maxInterned = 1 << 16
	maxFree     = 1 << 14
)

// release resets w and returns it to the pool, keeping its buffers unless
// an unusually large batch grew them.
func (w *writer) release() {
	for _, b := range w.buckets {
		for _, t := range b.traces {
			if len(w.freeTraces) < maxFree {
				t.svcs, t.links, t.spans = t.svcs[:0], t.links[:0], t.spans[:0]
				w.freeTraces = append(w.freeTraces, t)
			}
		}
		clear(b.traces)
		b.traces, b.posts = b.traces[:0], b.posts[:0]
		clear(b.byID)
		clear(b.terms)
		if len(w.freeBuckets) < 64 {
			w.freeBuckets = append(w.freeBuckets, b)
		}
	}
	clear(w.buckets)
	clear(w.newMeta)
	clear(w.reqs)
	w.reqs, w.scopes = w.reqs[:0], w.scopes[:0]
	if len(w.internKeys) > maxInterned {
		clear(w.intern)
		w.internKeys = w.internKeys[:0]
	}
	w.spans = 0
	w.kvs = w.kvs[:0]
	w.buf = w.buf[:0]
	if cap(w.buf) > 64<<20 {
		w.buf = nil
	}
	w.s.writers.Put(w)
}

func (w *writer) bucket(bkt uint32) *bucketAcc {
	b := w.buckets[bkt]
	if b == nil {
		if n := len(w.freeBuckets); n > 0 {
			b, w.freeBuckets = w.freeBuckets[n-1], w.freeBuckets[:n-1]
		} else {
			b = &bucketAcc{byID: map[pcommon.TraceID]uint32{}, terms: map[uint32]int32{}}
		}
		w.buckets[bkt] = b
	}
	return b
}

func (w *writer) add(td ptrace.Traces, req wireReq) {
	ri, si := len(w.reqs), len(w.scopes)
	w.reqs = append(w.reqs, req.proto)
	for _, sc := range req.scopes {
		sc.req = ri
		w.scopes = append(w.scopes, sc)
	}
	fi := 0
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		svc := tracestore.ServiceName(rs.Resource())
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			spans := rs.ScopeSpans().At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				w.addSpan(spanAt{si, req.spans[fi]}, svc, rs, spans.At(k))
				fi++
			}
			si++
		}
	}
}

func (w *writer) addSpan(at spanAt, svc string, rs ptrace.ResourceSpans, sp ptrace.Span) {
	w.spans++
	start := uint64(sp.StartTimestamp())
	dur := uint64(tracestore.Duration(sp))
	bkt := w.s.bucketOf(start)
	b := w.bucket(bkt)
	ord, ok := b.byID[sp.TraceID()]
	if !ok {
		ord = uint32(len(b.traces))
		b.byID[sp.TraceID()] = ord
		var t *traceAcc
		if n := len(w.freeTraces); n > 0 {
			t, w.freeTraces = w.freeTraces[n-1], w.freeTraces[:n-1]
		} else {
			t = &traceAcc{}
		}
		t.entry = traceEntry{id: sp.TraceID(), minStart: start, maxStart: start}
		b.traces = append(b.traces, t)
	}
	t := b.traces[ord]
	t.entry.minStart = min(t.entry.minStart, start)
	t.entry.maxStart = max(t.entry.maxStart, start)
	t.entry.maxDur = max(t.entry.maxDur, dur)
	t.spans = append(t.spans, at)
	si := slices.Index(t.svcs, svc)
	if si < 0 {
		si = len(t.svcs)
		t.svcs = append(t.svcs, svc)
	}
	t.links = append(t.links, linkRec{span: sp.SpanID(), parent: sp.ParentSpanID(), kind: byte(sp.Kind()), start: start, svc: si})

	d := durUS(dur)
	w.term = appendLP(append(w.term[:0], termService), svc)
	w.post(b, ord, d)
	w.term = appendLP(w.term, sp.Name())
	w.term[0] = termOp
	w.post(b, ord, d)
	tracestore.ForEachTag(rs.Resource(), sp, func(k, v string) bool {
		if len(k) <= tracestore.MaxTagLen && len(v) <= tracestore.MaxTagLen {
			w.term = appendLP(appendLP(append(w.term[:0], termTag), k), v)
			w.post(b, ord, 0)
		}
		return true
	})

	k := append(w.metaKey[:0], pfxMeta, metaService)
	w.metaKey = append(k, svc...)
	w.meta(bkt)
	k = appendLP(append(w.metaKey[:0], pfxMeta, metaOp), svc)
	w.metaKey = append(append(k, byte(sp.Kind())), sp.Name()...)
	w.meta(bkt)
	if v, ok := sp.Attributes().Get(tracestore.AttrPeerService); ok && v.AsString() != "" {
		k = appendLP(append(w.metaKey[:0], pfxMeta, metaRemote), svc)
		w.metaKey = append(k, v.AsString()...)
		w.meta(bkt)
	}
	if len(w.s.autoKey) > 0 {
		sp.Attributes().Range(func(key string, v pcommon.Value) bool {
			if w.s.autoKey[key] && len(v.AsString()) <= tracestore.MaxTagLen {
				k := appendLP(append(w.metaKey[:0], pfxMeta, metaTag), key)
				w.metaKey = append(k, v.AsString()...)
				w.meta(bkt)
			}
			return true
		})
	}
}

// post adds trace ord to the posting list of w.term, keeping the longest
// duration when the trace is already the last entry (the common case: a
// trace's spans usually arrive together).
func (w *writer) post(b *bucketAcc, ord uint32, d uint64) {
	id, ok := w.intern[string(w.term)]
	if !ok {
		id = uint32(len(w.internKeys))
		k := string(w.term)
		w.intern[k] = id
		w.internKeys = append(w.internKeys, k)
	}
	prev := int32(-1)
	if last, ok := b.terms[id]; ok {
		if p := &b.posts[last]; p.ord == ord {
			p.durUS = max(p.durUS, d)
			return
		}
		prev = last
	}
	b.terms[id] = int32(len(b.posts))
	b.posts = append(b.posts, termPost{posting{ord, d}, prev})
}

// set queues a key/value; flush applies them sorted.
func (w *writer) set(k, v []byte) {
	n := len(w.buf)
	w.buf = append(append(w.buf, k...), v...)
	w.kvs = append(w.kvs, kvRange{n, n + len(k), n + len(k) + len(v)})
}

// kvRange locates a key and its value in writer.buf (offsets, because buf
// grows and moves while the batch is built).
type kvRange struct{ k, v, end int }

// flush puts the batch's chunks, trace tables, posting lists and locators
// into batch under sequence number seq, in key order: Pebble's memtable
// inserter starts from the previous insert's skiplist position when it
// still brackets the key, so sorted keys walk less (measured with
// 1000-span batches: ~14% less store CPU per span; see docs/tracestore.md).
func (w *writer) flush(batch *pebble.Batch) error {
	slices.SortFunc(w.kvs, func(a, b kvRange) int {
		return bytes.Compare(w.buf[a.k:a.v], w.buf[b.k:b.v])
	})
	for _, r := range w.kvs {
		if err := batch.Set(w.buf[r.k:r.v], w.buf[r.v:r.end], nil); err != nil {
			return err
		}
	}
	return nil
}

// bySpanScope orders a trace's spans by scope: scopes are numbered in the
// order the group's requests added them, so a stable sort keeps the
// spans of each scope in arrival order, and the scopes in the order the
// trace first met them.
func bySpanScope(a, b spanAt) int { return a.scope - b.scope }

// batchSize is an upper bound of the batch's encoded size: per record a
// kind byte and two uvarint lengths besides the key and value.
func (w *writer) batchSize() int {
	return 12 + len(w.buf) + len(w.kvs)*(1+2*binary.MaxVarintLen32)
}

// encode queues every key of the batch under sequence number seq.
func (w *writer) encode(seq uint64) error {
	for bkt, b := range w.buckets {
		w.val = w.val[:0]
		var latest uint64
		for _, t := range b.traces {
			latest = max(latest, t.entry.maxStart)
			w.val = appendTraceEntry(w.val, &t.entry)
			if !slices.IsSortedFunc(t.spans, bySpanScope) {
				slices.SortStableFunc(t.spans, bySpanScope)
			}
			w.proto = appendTracesData(w.proto[:0], w.reqs, w.scopes, t.spans)
			w.key = chunkKey(w.key[:0], bkt, t.entry.id, seq)
			w.chunk = appendChunk(w.chunk[:0], t.svcs, t.links, w.proto)
			w.set(w.key, w.chunk)
			w.key = locateKey(w.key[:0], bkt, t.entry.id)
			w.set(w.key, nil)
		}
		w.set(tableKey(w.key[:0], bkt, seq), w.val)
		run, err := w.s.runningLatest(bkt, latest)
		if err != nil {
			return err
		}
		w.set(startKey(w.key[:0], bkt, seq), appendU64(w.val[len(w.val):], run))
		for id, last := range b.terms {
			ps := w.postings[:0]
			for i := last; i >= 0; i = b.posts[i].prev {
				ps = append(ps, b.posts[i].posting)
			}
			w.postings = ps
			slices.Reverse(ps)
			term := w.internKeys[id]
			// Spans of one trace that arrive apart leave the list unsorted.
			if !slices.IsSortedFunc(ps, func(a, b posting) int { return int(a.ord) - int(b.ord) }) {
				slices.SortFunc(ps, func(a, b posting) int { return int(a.ord) - int(b.ord) })
				out := ps[:1]
				for _, p := range ps[1:] {
					if last := &out[len(out)-1]; last.ord == p.ord {
						last.durUS = max(last.durUS, p.durUS)
						continue
					}
					out = append(out, p)
				}
				ps = out
			}
			w.key = appendU64(postingPrefix(w.key[:0], bkt, []byte(term)), seq)
			w.val = appendPostings(w.val[:0], ps, termHasDuration(term[0]))
			w.set(w.key, w.val)
		}
	}
	for k, b := range w.newMeta {
		w.set([]byte(k), appendU32(w.val[:0], b))
	}
	return nil
}

// runningLatest folds latest into bucket bkt's running maximum of trace
// starts and returns it, reading the bucket's newest start key the first
// time this process writes to the bucket. Batches are encoded one at a
// time (one group commits at a time), in seq order, so each start key
// bounds every older batch. A batch that then fails to commit leaves the
// maximum higher than its bucket holds: a looser bound, still a bound.
func (s *Store) runningLatest(bkt uint32, latest uint64) (uint64, error) {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	run, ok := s.running[bkt]
	if !ok {
		prefix := append(bucketPrefix(nil, bkt), secStart)
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
		if err != nil {
			return 0, err
		}
		if it.Last() {
			run = startBound(it.Value())
		}
		if err := it.Close(); err != nil {
			return 0, fmt.Errorf("read start keys of bucket %d: %w", bkt, err)
		}
		if len(s.running) >= maxRunning {
			clear(s.running) // re-read from the store on demand
		}
	}
	run = max(run, latest)
	s.running[bkt] = run
	return run, nil
}

// maxRunning bounds the buckets whose running maximum is kept in memory
// (72 hourly buckets by default).
const maxRunning = 1024

// meta records the metadata key in w.metaKey unless this process already
// wrote it for this bucket or a newer one.
func (w *writer) meta(bkt uint32) {
	k := w.metaKey
	if b, ok := w.newMeta[string(k)]; ok && b >= bkt {
		return
	}
	w.s.mu.RLock()
	b, ok := w.s.meta[string(k)]
	w.s.mu.RUnlock()
	if ok && b >= bkt {
		return
	}
	w.newMeta[string(k)] = bkt
}

// oldestBucket is the first bucket still within the TTL.
func (s *Store) oldestBucket() uint32 {
	return s.bucketOf(uint64(s.cfg.Now().Add(-s.cfg.TTL).UnixNano()))
}

// GetTrace implements tracestore.Reader.
func (s *Store) GetTrace(ctx context.Context, id pcommon.TraceID) (*tracestore.Trace, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	return s.getTrace(it, id)
}

// locate lists the existing buckets holding spans of trace id, newest
// first, from the locator keys of every live epoch.
func (s *Store) locate(it *pebble.Iterator, id pcommon.TraceID) ([]uint32, error) {
	s.mu.RLock()
	epochs := map[uint32]bool{}
	for b := range s.buckets {
		epochs[b/epochBuckets] = true
	}
	s.mu.RUnlock()
	var out []uint32
	var prefix []byte
	for e := range epochs {
		prefix = locatePrefix(prefix[:0], e, id)
		it.SetBounds(prefix, prefixEnd(prefix))
		for ok := it.First(); ok; ok = it.Next() {
			k := it.Key()
			if len(k) == len(prefix)+4 {
				out = append(out, uint32(k[len(prefix)])<<24|uint32(k[len(prefix)+1])<<16|uint32(k[len(prefix)+2])<<8|uint32(k[len(prefix)+3]))
			}
		}
		if err := it.Error(); err != nil {
			return nil, err
		}
	}
	s.mu.RLock()
	out = slices.DeleteFunc(out, func(b uint32) bool { _, ok := s.buckets[b]; return !ok })
	s.mu.RUnlock()
	slices.Sort(out)
	slices.Reverse(out)
	return out, nil
}

// chunkSpans decodes a chunk value and calls fn for each of its spans.
func chunkSpans(um *ptrace.ProtoUnmarshaler, v []byte, fn func(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, sp ptrace.Span)) error {
	proto, err := parseChunk(v, nil)
	if err != nil {
		return err
	}
	td, err := um.UnmarshalTraces(proto)
	if err != nil {
		return fmt.Errorf("chunk: %w", err)
	}
	tracestore.EachSpan(td, fn)
	return nil
}

func (s *Store) getTrace(it *pebble.Iterator, id pcommon.TraceID) (*tracestore.Trace, error) {
	st, _, err := s.storedTrace(it, id, nil)
	if err != nil {
		return nil, err
	}
	return st.Trace(func(_ int, err error) {
		s.cfg.Logger.Warn("corrupt trace chunk", "trace", id.String(), "err", err)
	})
}

// GetStoredTrace is GetTrace without decoding the spans: the trace's
// chunks as stored, for a query API that decodes them into its own answer.
// The chunks are appended to arena (which may be nil), returned grown: a
// caller that keeps it for its next request allocates nothing for them.
func (s *Store) GetStoredTrace(ctx context.Context, id pcommon.TraceID, arena []byte) (tracestore.StoredTrace, []byte, error) {
	if err := s.checkOpen(); err != nil {
		return tracestore.StoredTrace{}, arena, err
	}
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{})
	if err != nil {
		return tracestore.StoredTrace{}, arena, err
	}
	defer it.Close()
	return s.storedTrace(it, id, arena)
}

// storedTrace reads the chunks of trace id: bucket by bucket, newest
// first, and within a bucket in write order (the order in which a later
// copy of a span replaces an earlier one); ErrTraceNotFound when there are
// none. The chunks are copied into arena.
func (s *Store) storedTrace(it *pebble.Iterator, id pcommon.TraceID, arena []byte) (tracestore.StoredTrace, []byte, error) {
	st := tracestore.StoredTrace{ID: id, MaxSpans: s.cfg.MaxSpansPerTrace}
	buckets, err := s.locate(it, id)
	if err != nil {
		return st, arena, err
	}
	var prefix []byte
	for _, bkt := range buckets {
		prefix = chunkPrefix(prefix[:0], bkt, id)
		it.SetBounds(prefix, prefixEnd(prefix))
		for ok := it.First(); ok; ok = it.Next() {
			proto, err := parseChunk(it.Value(), nil)
			if err != nil {
				s.cfg.Logger.Warn("corrupt trace chunk", "trace", id.String(), "err", err)
				continue
			}
			// The iterator's memory is reused on the next step. A chunk
			// stays valid when a later append moves the arena: it keeps
			// the old array alive.
			start := len(arena)
			arena = append(arena, proto...)
			st.Chunks = append(st.Chunks, arena[start:len(arena):len(arena)])
		}
		if err := it.Error(); err != nil {
			return st, arena, err
		}
	}
	if len(st.Chunks) == 0 {
		return st, arena, tracestore.ErrTraceNotFound
	}
	return st, arena, nil
}
