// Package pebblestore is the embedded, durable tracestore backend on
// Pebble: spans grouped by trace id inside hourly time buckets, secondary
// indexes for service, operation, tag and duration in the same buckets,
// retention by dropping whole buckets (TTL and disk-size cap).
package pebblestore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
)

// Config opens a Store.
type Config struct {
	// Dir is the database directory, created when missing.
	Dir string
	// TTL is how long spans are kept, by span start time. Default 72h.
	TTL time.Duration
	// MaxDiskBytes caps the database size: when exceeded the oldest time
	// buckets are dropped. Zero means no cap.
	MaxDiskBytes int64
	// BucketWidth is the time-bucket size, the granularity of retention.
	// Default 1h.
	BucketWidth time.Duration
	// MaxLookback bounds how far back a search reaches. Default TTL.
	MaxLookback time.Duration
	// MaxSpansPerTrace caps GetTrace. Default tracestore.DefaultMaxSpansPerTrace.
	MaxSpansPerTrace int
	// MaxScan bounds the index entries one search reads. Default 2,000,000.
	MaxScan int
	// RetentionInterval is how often expired buckets are dropped. Default 1m.
	RetentionInterval time.Duration
	// CacheBytes is Pebble's block cache. Default 128 MiB.
	CacheBytes int64
	// AutocompleteKeys are the span tag keys whose values are kept for
	// GetTagValues (Zipkin's autocompleteValues).
	AutocompleteKeys []string
	// NoSync acknowledges writes before the WAL reaches disk. Only for
	// benchmarks: a crash then loses acknowledged spans.
	NoSync bool
	// Logger receives retention and corruption reports. Default discards.
	Logger *slog.Logger
	// Now is the clock; default time.Now. Tests move it.
	Now func() time.Time
	// Registerer receives the store's self-metrics; nil registers none.
	Registerer prometheus.Registerer
}

func (c *Config) defaults() {
	if c.TTL <= 0 {
		c.TTL = tracestore.DefaultTTL
	}
	if c.BucketWidth <= 0 {
		c.BucketWidth = time.Hour
	}
	if c.MaxLookback <= 0 {
		c.MaxLookback = c.TTL
	}
	if c.MaxSpansPerTrace <= 0 {
		c.MaxSpansPerTrace = tracestore.DefaultMaxSpansPerTrace
	}
	if c.MaxScan <= 0 {
		c.MaxScan = 2_000_000
	}
	if c.RetentionInterval <= 0 {
		c.RetentionInterval = time.Minute
	}
	if c.CacheBytes <= 0 {
		c.CacheBytes = 128 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// maxMetaCache bounds the set of metadata keys known to be written.
const maxMetaCache = 1 << 20

// Store is the Pebble backend. It is safe for concurrent use.
type Store struct {
	cfg     Config
	db      *pebble.DB
	wo      *pebble.WriteOptions
	autoKey map[string]bool
	m       *metrics

	mu       sync.RWMutex
	buckets  map[uint32]struct{}
	closed   bool
	meta     map[string]uint32
	depCache map[uint32][]tracestore.DependencyLink

	// retMu serialises retention passes.
	retMu sync.Mutex
	stop  chan struct{}
	done  chan struct{}
}

var _ tracestore.Store = (*Store)(nil)

// Open opens (or creates) the store in cfg.Dir and starts its retention
// loop. Close stops it.
func Open(cfg Config) (*Store, error) {
	cfg.defaults()
	if cfg.Dir == "" {
		return nil, errors.New("pebblestore: Dir is required")
	}
	cache := pebble.NewCache(cfg.CacheBytes)
	defer cache.Unref()
	opts := &pebble.Options{
		Cache:                       cache,
		MemTableSize:                64 << 20,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       24,
		Logger:                      quietLogger{cfg.Logger},
	}
	opts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionBalanced })
	db, err := pebble.Open(cfg.Dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open trace store %s: %w", cfg.Dir, err)
	}
	s := &Store{
		cfg:      cfg,
		db:       db,
		wo:       pebble.Sync,
		autoKey:  map[string]bool{},
		buckets:  map[uint32]struct{}{},
		meta:     map[string]uint32{},
		depCache: map[uint32][]tracestore.DependencyLink{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if cfg.NoSync {
		s.wo = pebble.NoSync
	}
	for _, k := range cfg.AutocompleteKeys {
		s.autoKey[k] = true
	}
	s.m = newMetrics(cfg.Registerer, s)
	if err := s.loadBuckets(); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.EnforceRetention(context.Background()); err != nil {
		cfg.Logger.Warn("trace store retention at open failed", "err", err)
	}
	go s.retentionLoop()
	return s, nil
}

type quietLogger struct{ l *slog.Logger }

func (q quietLogger) Infof(format string, args ...any) {}
func (q quietLogger) Errorf(format string, args ...any) {
	q.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}
func (q quietLogger) Fatalf(format string, args ...any) {
	q.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(fmt.Sprintf(format, args...))
}

func (s *Store) loadBuckets() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pfxBucket}, UpperBound: []byte{pfxBucket + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; {
		k := it.Key()
		if len(k) < 5 {
			ok = it.Next()
			continue
		}
		bkt := binary.BigEndian.Uint32(k[1:5])
		s.buckets[bkt] = struct{}{}
		if bkt == ^uint32(0) {
			break
		}
		ok = it.SeekGE(bucketPrefix(nil, bkt+1))
	}
	return it.Error()
}

// Capabilities implements tracestore.Store.
func (s *Store) Capabilities() tracestore.Capabilities {
	return tracestore.Capabilities{
		Durable:          !s.cfg.NoSync,
		TTL:              s.cfg.TTL,
		MaxLookback:      s.cfg.MaxLookback,
		MaxSpansPerTrace: s.cfg.MaxSpansPerTrace,
		AutocompleteKeys: slices.Clone(s.cfg.AutocompleteKeys),
	}
}

// Close stops retention and closes the database.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	s.retMu.Lock()
	defer s.retMu.Unlock()
	return s.db.Close()
}

// DB exposes the Pebble handle for benchmarks and tests (disk metrics).
func (s *Store) DB() *pebble.DB { return s.db }

func (s *Store) bucketOf(ts uint64) uint32 {
	b := ts / uint64(s.cfg.BucketWidth)
	if b > uint64(^uint32(0)) {
		return ^uint32(0)
	}
	return uint32(b)
}

func (s *Store) bucketStart(b uint32) time.Time {
	return time.Unix(0, int64(b)*int64(s.cfg.BucketWidth))
}

// bucketsDesc lists the existing buckets in [lo, hi], newest first.
func (s *Store) bucketsDesc(lo, hi uint32) []uint32 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]uint32, 0, len(s.buckets))
	for b := range s.buckets {
		if b >= lo && b <= hi {
			out = append(out, b)
		}
	}
	slices.Sort(out)
	slices.Reverse(out)
	return out
}

func (s *Store) checkOpen() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return tracestore.ErrClosed
	}
	return nil
}

// ConsumeTraces implements pipeline.TraceConsumer.
func (s *Store) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	return s.WriteTraces(ctx, td)
}

// WriteTraces stores td in one synced Pebble batch: once it returns nil the
// spans survive a crash. Concurrent callers share WAL syncs (Pebble's
// commit pipeline groups them).
func (s *Store) WriteTraces(ctx context.Context, td ptrace.Traces) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	w := writer{s: s, batch: s.db.NewBatch(), newBuckets: map[uint32]struct{}{}, newMeta: map[string]uint32{}, resDone: map[resDoneKey]bool{}}
	defer w.batch.Close()
	if err := w.add(td); err != nil {
		s.m.Failed.Inc()
		return err
	}
	if w.batch.Empty() {
		return nil
	}
	if err := w.batch.Commit(s.wo); err != nil {
		s.m.Failed.Inc()
		return fmt.Errorf("commit %d spans: %w", w.spans, err)
	}
	s.m.Spans.Add(float64(w.spans))
	s.m.Batches.Inc()
	s.m.Latency.Observe(time.Since(start).Seconds())
	s.mu.Lock()
	for b := range w.newBuckets {
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

type resDoneKey struct {
	bkt   uint32
	trace pcommon.TraceID
	hash  uint64
}

type writer struct {
	s          *Store
	batch      *pebble.Batch
	newBuckets map[uint32]struct{}
	newMeta    map[string]uint32
	resDone    map[resDoneKey]bool
	spans      int
	key, val   []byte
	tmp        ptrace.Traces
	tmpSpan    ptrace.Span
	marshal    ptrace.ProtoMarshaler
	tags       map[[2]string]bool
}

func (w *writer) add(td ptrace.Traces) error {
	w.tmp = ptrace.NewTraces()
	w.tmpSpan = w.tmp.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	w.tags = map[[2]string]bool{}
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		res := rs.Resource()
		svc := tracestore.ServiceName(res)
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j)
			hash := tracestore.ResourceScopeHash(res, ss.Scope())
			var resBytes []byte
			for k := 0; k < ss.Spans().Len(); k++ {
				sp := ss.Spans().At(k)
				bkt := w.s.bucketOf(uint64(sp.StartTimestamp()))
				rk := resDoneKey{bkt, sp.TraceID(), hash}
				if lk := (resDoneKey{bkt: bkt, trace: sp.TraceID()}); !w.resDone[lk] {
					w.key = locateKey(w.key[:0], bkt, sp.TraceID())
					if err := w.batch.Set(w.key, nil, nil); err != nil {
						return err
					}
					w.resDone[lk] = true
				}
				if !w.resDone[rk] {
					if resBytes == nil {
						var err error
						if resBytes, err = marshalResource(res, ss.Scope()); err != nil {
							return fmt.Errorf("encode resource: %w", err)
						}
					}
					w.key = resourceKey(w.key[:0], bkt, sp.TraceID(), hash)
					if err := w.batch.Set(w.key, resBytes, nil); err != nil {
						return err
					}
					w.resDone[rk] = true
				}
				if err := w.addSpan(bkt, hash, svc, res, sp); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func marshalResource(res pcommon.Resource, sc pcommon.InstrumentationScope) ([]byte, error) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	res.CopyTo(rs.Resource())
	sc.CopyTo(rs.ScopeSpans().AppendEmpty().Scope())
	m := ptrace.ProtoMarshaler{}
	return m.MarshalTraces(td)
}

func (w *writer) addSpan(bkt uint32, hash uint64, svc string, res pcommon.Resource, sp ptrace.Span) error {
	w.spans++
	w.newBuckets[bkt] = struct{}{}
	tid, sid, kind := sp.TraceID(), sp.SpanID(), sp.Kind()
	start := uint64(sp.StartTimestamp())
	dur := uint64(tracestore.Duration(sp))

	sp.CopyTo(w.tmpSpan)
	proto, err := w.marshal.MarshalTraces(w.tmp)
	if err != nil {
		return fmt.Errorf("encode span: %w", err)
	}
	w.val = appendSpanValue(w.val[:0], hash, sp.ParentSpanID(), svc, proto)
	w.key = spanKey(w.key[:0], bkt, tid, sid, kind, start)
	if err := w.batch.Set(w.key, w.val, nil); err != nil {
		return err
	}

	durVal := binary.AppendUvarint(nil, dur)
	index := func(idx byte, fields ...string) error {
		k := append(bucketPrefix(w.key[:0], bkt), secIndex, idx)
		for _, f := range fields {
			k = appendLP(k, f)
		}
		w.key = appendSuffix(k, start, tid, sid, kind)
		return w.batch.Set(w.key, durVal, nil)
	}
	durIndex := func(op string) error {
		k := append(bucketPrefix(w.key[:0], bkt), secDuration)
		k = appendLP(appendLP(k, svc), op)
		k = appendU64(k, dur)
		w.key = appendSuffix(k, start, tid, sid, kind)
		return w.batch.Set(w.key, nil, nil)
	}
	if err := errors.Join(
		index(idxAll),
		index(idxService, svc),
		index(idxOp, svc, sp.Name()),
		durIndex(""),
		durIndex(sp.Name()),
	); err != nil {
		return err
	}
	clear(w.tags)
	tracestore.ForEachTag(res, sp, func(k, v string) bool {
		if len(k) <= tracestore.MaxTagLen && len(v) <= tracestore.MaxTagLen {
			w.tags[[2]string{k, v}] = true
		}
		return true
	})
	for kv := range w.tags {
		if err := index(idxTag, svc, kv[0], kv[1]); err != nil {
			return err
		}
	}

	w.meta(bkt, metaService, []byte(svc))
	w.meta(bkt, metaOp, append(appendLP(nil, svc), byte(kind)), []byte(sp.Name()))
	if v, ok := sp.Attributes().Get(tracestore.AttrPeerService); ok && v.AsString() != "" {
		w.meta(bkt, metaRemote, appendLP(nil, svc), []byte(v.AsString()))
	}
	if len(w.s.autoKey) > 0 {
		sp.Attributes().Range(func(k string, v pcommon.Value) bool {
			if w.s.autoKey[k] && len(v.AsString()) <= tracestore.MaxTagLen {
				w.meta(bkt, metaTag, appendLP(nil, k), []byte(v.AsString()))
			}
			return true
		})
	}
	return nil
}

// meta records a metadata key unless this process already wrote it for
// this bucket or a newer one.
func (w *writer) meta(bkt uint32, kind byte, parts ...[]byte) {
	k := []byte{pfxMeta, kind}
	for _, p := range parts {
		k = append(k, p...)
	}
	ks := string(k)
	if b, ok := w.newMeta[ks]; ok && b >= bkt {
		return
	}
	w.s.mu.RLock()
	b, ok := w.s.meta[ks]
	w.s.mu.RUnlock()
	if ok && b >= bkt {
		return
	}
	w.newMeta[ks] = bkt
	_ = w.batch.Set(k, appendU32(nil, bkt), nil)
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
				out = append(out, binary.BigEndian.Uint32(k[len(prefix):]))
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

func (s *Store) getTrace(it *pebble.Iterator, id pcommon.TraceID) (*tracestore.Trace, error) {
	buckets, err := s.locate(it, id)
	if err != nil {
		return nil, err
	}
	a := tracestore.NewAssembler()
	resources := map[uint64]ptrace.ResourceSpans{}
	var um ptrace.ProtoUnmarshaler
	out := &tracestore.Trace{ID: id}
	n, total := 0, 0
	var prefix []byte
	for _, bkt := range buckets {
		prefix = tracePrefix(prefix[:0], bkt, id)
		it.SetBounds(prefix, prefixEnd(prefix))
		for ok := it.First(); ok; ok = it.Next() {
			k := it.Key()
			if len(k) <= len(prefix) {
				continue
			}
			switch k[len(prefix)] {
			case recResource:
				if len(k) != len(prefix)+9 {
					continue
				}
				hash := binary.BigEndian.Uint64(k[len(prefix)+1:])
				if _, ok := resources[hash]; ok {
					continue
				}
				td, err := um.UnmarshalTraces(it.Value())
				if err != nil || td.ResourceSpans().Len() == 0 || td.ResourceSpans().At(0).ScopeSpans().Len() == 0 {
					s.cfg.Logger.Warn("corrupt resource record", "trace", id.String())
					continue
				}
				resources[hash] = td.ResourceSpans().At(0)
			case recSpan:
				total++
				if n >= s.cfg.MaxSpansPerTrace {
					continue
				}
				h, err := parseSpanValue(it.Value())
				if err != nil {
					s.cfg.Logger.Warn("corrupt span record", "trace", id.String(), "err", err)
					continue
				}
				td, err := um.UnmarshalTraces(h.proto)
				if err != nil || td.SpanCount() != 1 {
					s.cfg.Logger.Warn("corrupt span record", "trace", id.String(), "err", err)
					continue
				}
				sp := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
				rs, ok := resources[h.resHash]
				var ss ptrace.ScopeSpans
				if ok {
					ss = a.Scope(h.resHash, rs.Resource(), rs.ScopeSpans().At(0).Scope())
				} else {
					// Resource lost (should not happen): keep the span under
					// a resource naming its service.
					r := pcommon.NewResource()
					r.Attributes().PutStr(tracestore.AttrServiceName, h.service)
					ss = a.Scope(h.resHash, r, pcommon.NewInstrumentationScope())
				}
				sp.MoveTo(ss.Spans().AppendEmpty())
				n++
			}
		}
		if err := it.Error(); err != nil {
			return nil, err
		}
	}
	if n == 0 {
		return nil, tracestore.ErrTraceNotFound
	}
	if total > n {
		out.Warnings = append(out.Warnings, fmt.Sprintf("trace has %d spans; only the first %d are returned", total, n))
	}
	out.Spans = a.Traces()
	return out, nil
}

func (s *Store) scanMeta(prefix []byte, fn func(rest []byte)) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	oldest := s.oldestBucket()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v := it.Value()
		if len(v) == 4 && binary.BigEndian.Uint32(v) < oldest {
			continue
		}
		fn(it.Key()[len(prefix):])
	}
	return it.Error()
}

// GetServices implements tracestore.Reader.
func (s *Store) GetServices(context.Context) ([]string, error) {
	out := []string{}
	err := s.scanMeta([]byte{pfxMeta, metaService}, func(r []byte) { out = append(out, string(r)) })
	return out, err
}

// GetOperations implements tracestore.Reader.
func (s *Store) GetOperations(_ context.Context, service, kind string) ([]tracestore.Operation, error) {
	k, err := tracestore.ParseKind(kind)
	if err != nil {
		return nil, err
	}
	prefix := appendLP([]byte{pfxMeta, metaOp}, service)
	if kind != "" {
		prefix = append(prefix, byte(k))
	}
	var out []tracestore.Operation
	err = s.scanMeta(prefix, func(r []byte) {
		if kind == "" {
			if len(r) == 0 {
				return
			}
			out = append(out, tracestore.Operation{Name: string(r[1:]), SpanKind: tracestore.KindName(ptrace.SpanKind(r[0]))})
			return
		}
		out = append(out, tracestore.Operation{Name: string(r), SpanKind: kind})
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].SpanKind < out[j].SpanKind
	})
	if out == nil {
		out = []tracestore.Operation{}
	}
	return out, err
}

// GetRemoteServices implements tracestore.Reader.
func (s *Store) GetRemoteServices(_ context.Context, service string) ([]string, error) {
	out := []string{}
	err := s.scanMeta(appendLP([]byte{pfxMeta, metaRemote}, service), func(r []byte) { out = append(out, string(r)) })
	return out, err
}

// GetTagValues implements tracestore.Reader.
func (s *Store) GetTagValues(_ context.Context, key string) ([]string, error) {
	out := []string{}
	if !s.autoKey[key] {
		return out, nil
	}
	err := s.scanMeta(appendLP([]byte{pfxMeta, metaTag}, key), func(r []byte) { out = append(out, string(r)) })
	return out, err
}
