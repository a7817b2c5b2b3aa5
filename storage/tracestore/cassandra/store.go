package cassandra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
)

// Config configures the store (the driver settings are in ClusterConfig).
type Config struct {
	Keyspace string
	// Shards is the number of partitions per index bucket (default 4).
	// It must not change while data is kept: readers read Shards shards.
	Shards int
	// TTL of spans and indexes (default tracestore.DefaultTTL);
	// MetadataTTL of service and operation lists (default TTL).
	TTL, MetadataTTL time.Duration
	// MaxLookback bounds searches (default TTL).
	MaxLookback      time.Duration
	MaxSpansPerTrace int
	AutocompleteKeys []string
	// MaxBatchRows (default 64), MaxBatchBytes (default 40 KiB) and
	// SoloPartitionRows (default 32) shape the UNLOGGED batches.
	MaxBatchRows, MaxBatchBytes, SoloPartitionRows int
	// MaxInflightBatches bounds concurrent batch writes store-wide
	// (default 32). When Cassandra is slow, WriteTraces waits for a slot,
	// so backpressure reaches the receivers instead of memory growing.
	MaxInflightBatches int
	// ReadParallelism bounds the concurrent selects of one query
	// (default 16).
	ReadParallelism int
	// MaxScan bounds the index rows one search reads (default 2M).
	MaxScan int
	Logger  *slog.Logger
	// Registerer receives the self-metrics; nil for none.
	Registerer prometheus.Registerer
}

func (c *Config) defaults() error {
	if c.Keyspace == "" {
		c.Keyspace = "meshlens"
	}
	if !validIdent(c.Keyspace) {
		return fmt.Errorf("cassandra keyspace %q: want letters, digits and _ only", c.Keyspace)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Shards, 4)
	if c.Shards > 127 {
		return fmt.Errorf("cassandra shards %d: at most 127", c.Shards)
	}
	def(&c.MaxSpansPerTrace, tracestore.DefaultMaxSpansPerTrace)
	def(&c.MaxBatchRows, 64)
	def(&c.MaxBatchBytes, 40<<10)
	def(&c.SoloPartitionRows, 32)
	def(&c.MaxInflightBatches, 32)
	def(&c.ReadParallelism, 16)
	def(&c.MaxScan, 2_000_000)
	if c.TTL <= 0 {
		c.TTL = tracestore.DefaultTTL
	}
	if c.MetadataTTL <= 0 {
		c.MetadataTTL = c.TTL
	}
	if c.MaxLookback <= 0 {
		c.MaxLookback = c.TTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func validIdent(s string) bool {
	if s == "" || len(s) > 48 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// Store is the Cassandra trace store.
type Store struct {
	cfg    Config
	wcfg   WriteConfig
	sess   Session
	cql    map[*Table]string
	slots  chan struct{}
	closed atomic.Bool
	// Statements counts executed statements (a batch is one).
	Statements atomic.Int64
	m          *metrics
}

var _ tracestore.Store = (*Store)(nil)

// New returns a store over sess; the schema must exist (Migrate).
func New(sess Session, cfg Config) (*Store, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, sess: sess, cql: insertCQL(cfg.Keyspace), slots: make(chan struct{}, cfg.MaxInflightBatches)}
	s.wcfg = WriteConfig{Keyspace: cfg.Keyspace, Shards: cfg.Shards, TTL: cfg.TTL, MetadataTTL: cfg.MetadataTTL,
		AutocompleteKeys: cfg.AutocompleteKeys, MaxBatchRows: cfg.MaxBatchRows, MaxBatchBytes: cfg.MaxBatchBytes,
		SoloPartitionRows: cfg.SoloPartitionRows}
	s.m = newMetrics(cfg.Registerer, s)
	return s, nil
}

// Capabilities implements tracestore.Store.
func (s *Store) Capabilities() tracestore.Capabilities {
	return tracestore.Capabilities{Durable: true, TTL: s.cfg.TTL, MaxLookback: s.cfg.MaxLookback,
		MaxSpansPerTrace: s.cfg.MaxSpansPerTrace, AutocompleteKeys: s.cfg.AutocompleteKeys}
}

// Close closes the session.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.sess.Close()
	return nil
}

// ConsumeTraces implements pipeline.TraceConsumer.
func (s *Store) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	return s.WriteTraces(ctx, td)
}

// WriteTraces writes td as UNLOGGED batches (see Batches), at most
// MaxInflightBatches at a time store-wide. It returns when every batch
// was acknowledged at the configured consistency, or the first error.
func (s *Store) WriteTraces(ctx context.Context, td ptrace.Traces) (err error) {
	if s.closed.Load() {
		return tracestore.ErrClosed
	}
	t0 := time.Now()
	defer func() {
		s.m.Latency.Observe(time.Since(t0).Seconds())
		if err != nil {
			s.m.Failed.Inc()
			return
		}
		s.m.Batches.Inc()
		s.m.Spans.Add(float64(td.SpanCount()))
	}()
	stmts, err := Rows(s.wcfg, s.cql, td)
	if err != nil {
		return err
	}
	batches := Batches(s.wcfg, stmts)
	var wg sync.WaitGroup
	errs := make([]error, len(batches))
	for i, b := range batches {
		w := time.Now()
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return fmt.Errorf("cassandra write: waiting for a batch slot: %w", ctx.Err())
		}
		s.m.slotWait.Observe(time.Since(w).Seconds())
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-s.slots }()
			s.Statements.Add(1)
			errs[i] = s.sess.ExecBatch(ctx, b)
			s.m.statements.WithLabelValues("batch", result(errs[i])).Inc()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cassandra write: %w", err)
	}
	return nil
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// query runs one select and calls fn per row.
func (s *Store) query(ctx context.Context, st Stmt, fn func(row []any) bool) error {
	s.Statements.Add(1)
	it := s.sess.Query(ctx, st)
	for {
		row, ok := it.Next()
		if !ok || !fn(row) {
			break
		}
	}
	err := it.Close()
	s.m.statements.WithLabelValues("select", result(err)).Inc()
	if err != nil {
		return fmt.Errorf("cassandra %s: %w", st.Table.Name, err)
	}
	return nil
}

// fanOut runs the selects in parallel (at most ReadParallelism at once),
// collecting each one's rows separately.
func (s *Store) fanOut(ctx context.Context, stmts []Stmt) ([][][]any, error) {
	out := make([][][]any, len(stmts))
	errs := make([]error, len(stmts))
	sem := make(chan struct{}, s.cfg.ReadParallelism)
	var wg sync.WaitGroup
	for i := range stmts {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = s.query(ctx, stmts[i], func(row []any) bool {
				out[i] = append(out[i], row)
				return true
			})
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// GetTrace implements tracestore.Reader.
func (s *Store) GetTrace(ctx context.Context, id pcommon.TraceID) (*tracestore.Trace, error) {
	a := tracestore.NewAssembler()
	tr := &tracestore.Trace{ID: id}
	var derr error
	n := 0
	err := s.query(ctx, PlanTrace(s.cfg.Keyspace, id[:], s.cfg.MaxSpansPerTrace+1), func(row []any) bool {
		n++
		if n > s.cfg.MaxSpansPerTrace {
			tr.Warnings = append(tr.Warnings, fmt.Sprintf("trace has more than %d spans; only the first %d are returned", s.cfg.MaxSpansPerTrace, s.cfg.MaxSpansPerTrace))
			return false
		}
		if err := decodeSpanInto(a, row[3].([]byte)); err != nil && derr == nil {
			derr = err
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, tracestore.ErrTraceNotFound
	}
	if derr != nil {
		tr.Warnings = append(tr.Warnings, "some spans could not be decoded: "+derr.Error())
	}
	tr.Spans = a.Traces()
	return tr, nil
}

var spanUnmarshaler = &ptrace.ProtoUnmarshaler{}

func decodeSpanInto(a *tracestore.Assembler, blob []byte) error {
	td, err := spanUnmarshaler.UnmarshalTraces(blob)
	if err != nil {
		return fmt.Errorf("decode span: %w", err)
	}
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j)
			for k := 0; k < ss.Spans().Len(); k++ {
				a.AddSpan(rs.Resource(), ss.Scope(), ss.Spans().At(k))
			}
		}
	}
	return nil
}

func (s *Store) days() []int32 {
	now := time.Now()
	return PlanDays(now.Add(-s.cfg.MetadataTTL), now)
}

// strings runs the selects and returns the sorted distinct values of the
// first column.
func (s *Store) strings(ctx context.Context, stmts []Stmt) ([]string, error) {
	res, err := s.fanOut(ctx, stmts)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, rows := range res {
		for _, r := range rows {
			set[r[0].(string)] = true
		}
	}
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	sort.Strings(out)
	return out, nil
}

// GetServices implements tracestore.Reader.
func (s *Store) GetServices(ctx context.Context) ([]string, error) {
	return s.strings(ctx, PlanServices(s.cfg.Keyspace, s.days()))
}

// GetOperations implements tracestore.Reader.
func (s *Store) GetOperations(ctx context.Context, service, kind string) ([]tracestore.Operation, error) {
	k, err := tracestore.ParseKind(kind)
	if err != nil {
		return nil, err
	}
	kv := int8(-1)
	if kind != "" {
		kv = int8(k)
	}
	res, err := s.fanOut(ctx, PlanOperations(s.cfg.Keyspace, service, kv, s.days()))
	if err != nil {
		return nil, err
	}
	set := map[tracestore.Operation]bool{}
	for _, rows := range res {
		for _, r := range rows {
			set[tracestore.Operation{Name: r[1].(string), SpanKind: tracestore.KindName(ptrace.SpanKind(r[0].(int8)))}] = true
		}
	}
	out := make([]tracestore.Operation, 0, len(set))
	for o := range set {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].SpanKind < out[j].SpanKind
	})
	return out, nil
}

// GetRemoteServices implements tracestore.Reader.
func (s *Store) GetRemoteServices(ctx context.Context, service string) ([]string, error) {
	return s.strings(ctx, PlanRemoteServices(s.cfg.Keyspace, service, s.days()))
}

// GetTagValues implements tracestore.Reader.
func (s *Store) GetTagValues(ctx context.Context, key string) ([]string, error) {
	if !slices.Contains(s.cfg.AutocompleteKeys, key) {
		return []string{}, nil
	}
	return s.strings(ctx, PlanTagValues(s.cfg.Keyspace, key, s.days()))
}

// candidate is one index row.
type candidate struct {
	start   int64
	trace   pcommon.TraceID
	span    pcommon.SpanID
	kind    int8
	dur     int64
	servIdx int
}

// FindTraceIDs implements tracestore.Reader: the plan's buckets newest
// first, each bucket's partitions read in parallel and merged newest
// first, candidates checked against the query (reading their trace only
// when the index does not imply every predicate), until limit traces.
func (s *Store) FindTraceIDs(ctx context.Context, q tracestore.Query) ([]pcommon.TraceID, error) {
	q, err := q.Normalize(time.Now(), s.cfg.MaxLookback)
	if err != nil {
		return nil, err
	}
	var services []string
	if q.Service == "" {
		if services, err = s.GetServices(ctx); err != nil {
			return nil, err
		}
	}
	plan := PlanFind(s.cfg.Keyspace, s.cfg.Shards, q, services)
	seen := map[pcommon.TraceID]bool{}
	var out []pcommon.TraceID
	traces := map[pcommon.TraceID]*tracestore.Trace{}
	scanned := 0
	for _, bs := range plan.Buckets {
		res, err := s.fanOut(ctx, bs.Stmts)
		if err != nil {
			return nil, err
		}
		var cands []candidate
		for _, rows := range res {
			for _, r := range rows {
				scanned++
				c := candidate{start: r[0].(int64), kind: r[3].(int8), dur: r[4].(int64)}
				copy(c.trace[:], r[1].([]byte))
				copy(c.span[:], r[2].([]byte))
				if seen[c.trace] || !q.MatchTime(time.Unix(0, c.start), time.Duration(c.dur)) {
					continue
				}
				cands = append(cands, c)
			}
		}
		sort.SliceStable(cands, func(i, j int) bool { return cands[i].start > cands[j].start })
		if plan.Verify {
			if err := s.loadTraces(ctx, cands, traces, seen); err != nil {
				return nil, err
			}
		}
		for _, c := range cands {
			if seen[c.trace] {
				continue
			}
			if plan.Verify && !spanMatches(&q, traces[c.trace], c) {
				continue
			}
			seen[c.trace] = true
			out = append(out, c.trace)
			if len(out) >= q.Limit {
				return out, nil
			}
		}
		if scanned >= s.cfg.MaxScan {
			break
		}
	}
	return out, nil
}

// loadTraces reads, in parallel, the traces of candidates not yet loaded
// or accepted.
func (s *Store) loadTraces(ctx context.Context, cands []candidate, traces map[pcommon.TraceID]*tracestore.Trace, seen map[pcommon.TraceID]bool) error {
	var ids []pcommon.TraceID
	want := map[pcommon.TraceID]bool{}
	for _, c := range cands {
		if _, ok := traces[c.trace]; !ok && !seen[c.trace] && !want[c.trace] {
			want[c.trace] = true
			ids = append(ids, c.trace)
		}
	}
	got := make([]*tracestore.Trace, len(ids))
	errs := make([]error, len(ids))
	sem := make(chan struct{}, s.cfg.ReadParallelism)
	var wg sync.WaitGroup
	for i, id := range ids {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			got[i], errs[i] = s.GetTrace(ctx, id)
			if errors.Is(errs[i], tracestore.ErrTraceNotFound) {
				errs[i] = nil // index row outlived its span (TTL skew)
			}
		}()
	}
	wg.Wait()
	for i, id := range ids {
		traces[id] = got[i]
	}
	return errors.Join(errs...)
}

// spanMatches checks the candidate's own span against the whole query.
func spanMatches(q *tracestore.Query, tr *tracestore.Trace, c candidate) bool {
	if tr == nil {
		return false
	}
	rss := tr.Spans.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			sps := rs.ScopeSpans().At(j).Spans()
			for k := 0; k < sps.Len(); k++ {
				sp := sps.At(k)
				if sp.SpanID() == c.span && int8(sp.Kind()) == c.kind && int64(sp.StartTimestamp()) == c.start {
					return q.MatchSpan(rs.Resource(), sp)
				}
			}
		}
	}
	return false
}

// FindTraces implements tracestore.Reader.
func (s *Store) FindTraces(ctx context.Context, q tracestore.Query) ([]*tracestore.Trace, error) {
	ids, err := s.FindTraceIDs(ctx, q)
	if err != nil {
		return nil, err
	}
	got := make([]*tracestore.Trace, len(ids))
	errs := make([]error, len(ids))
	sem := make(chan struct{}, s.cfg.ReadParallelism)
	var wg sync.WaitGroup
	for i, id := range ids {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			got[i], errs[i] = s.GetTrace(ctx, id)
		}()
	}
	wg.Wait()
	out := make([]*tracestore.Trace, 0, len(ids))
	for i := range ids {
		if errs[i] == nil {
			out = append(out, got[i])
		} else if !errors.Is(errs[i], tracestore.ErrTraceNotFound) {
			return nil, errs[i]
		}
	}
	return out, nil
}

// GetDependencies implements tracestore.Reader: links are computed by
// meshlens from the service index (span, parent, kind per row), so no
// separate batch job is needed.
func (s *Store) GetDependencies(ctx context.Context, endTs time.Time, lookback time.Duration) ([]tracestore.DependencyLink, error) {
	from := endTs.Add(-lookback)
	services, err := s.GetServices(ctx)
	if err != nil {
		return nil, err
	}
	stmts := PlanDependencies(s.cfg.Keyspace, s.cfg.Shards, services, from, endTs)
	res, err := s.fanOut(ctx, stmts)
	if err != nil {
		return nil, err
	}
	byTrace := map[pcommon.TraceID][]tracestore.LinkSpan{}
	for i, rows := range res {
		svc := stmts[i].Partition[0].(string)
		for _, r := range rows {
			if r[0].(int64) <= from.UnixNano() {
				continue
			}
			var tid pcommon.TraceID
			copy(tid[:], r[1].([]byte))
			var ls tracestore.LinkSpan
			copy(ls.SpanID[:], r[2].([]byte))
			ls.Kind = ptrace.SpanKind(r[3].(int8))
			copy(ls.ParentID[:], r[4].([]byte))
			ls.Service = svc
			byTrace[tid] = append(byTrace[tid], ls)
		}
	}
	l := tracestore.NewLinker()
	for _, spans := range byTrace {
		l.AddTrace(spans)
	}
	return l.Links(), nil
}
