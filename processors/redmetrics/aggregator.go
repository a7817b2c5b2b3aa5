// Package redmetrics aggregates call records into RED (rate, errors,
// duration) metrics and writes them to a Prometheus storage at a fixed,
// aligned interval: Istio's standard metrics, meshlens's per-scope families
// (service, instance, endpoint and their relations, see docs/metrics.md), and
// the service-graph series Grafana reads.
//
// Counters are cumulative and continue across restarts: at start-up the
// aggregator reads the newest value of each of its series back from storage.
package redmetrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/storage"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/processors/spancalls"
)

// Config configures the aggregator.
type Config struct {
	// FlushInterval is how often aggregated series are written; samples are
	// stamped at multiples of it.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// StaleAfter stops writing a series that received no data for this long
	// (it then goes stale in PromQL like an ended scrape target).
	StaleAfter time.Duration `yaml:"stale_after"`
	// EvictAfter forgets an idle series; if it comes back its counters
	// restart at zero, which PromQL's rate() handles as a counter reset.
	EvictAfter time.Duration `yaml:"evict_after"`
	// MaxSeriesPerFamily caps the label combinations of each family.
	MaxSeriesPerFamily int `yaml:"max_series_per_family"`
	// ApdexThreshold is the default Apdex T; ApdexThresholds overrides it
	// per service name.
	ApdexThreshold  time.Duration            `yaml:"apdex_threshold"`
	ApdexThresholds map[string]time.Duration `yaml:"apdex_thresholds"`
	// TrustDomain builds the SPIFFE principal of an identity when the proxy
	// did not report one.
	TrustDomain string `yaml:"trust_domain"`
}

// DefaultConfig returns the defaults documented in docs/metrics.md.
func DefaultConfig() Config {
	return Config{
		FlushInterval:      10 * time.Second,
		StaleAfter:         5 * time.Minute,
		EvictAfter:         time.Hour,
		MaxSeriesPerFamily: 100_000,
		ApdexThreshold:     500 * time.Millisecond,
		TrustDomain:        "cluster.local",
	}
}

// Validate reports problems a person can fix, naming the field.
func (c Config) Validate() error {
	var errs []error
	if c.FlushInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("processors.metrics.flush_interval: %s is below the 100ms minimum", c.FlushInterval))
	}
	if c.StaleAfter < c.FlushInterval {
		errs = append(errs, fmt.Errorf("processors.metrics.stale_after: %s must be at least flush_interval (%s)", c.StaleAfter, c.FlushInterval))
	}
	if c.EvictAfter < c.StaleAfter {
		errs = append(errs, fmt.Errorf("processors.metrics.evict_after: %s must be at least stale_after (%s)", c.EvictAfter, c.StaleAfter))
	}
	if c.MaxSeriesPerFamily <= 0 {
		errs = append(errs, errors.New("processors.metrics.max_series_per_family: must be positive"))
	}
	if c.ApdexThreshold <= 0 {
		errs = append(errs, errors.New("processors.metrics.apdex_threshold: must be positive"))
	}
	for svc, d := range c.ApdexThresholds {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("processors.metrics.apdex_thresholds[%s]: must be positive", svc))
		}
	}
	return errors.Join(errs...)
}

// SeriesPattern matches the metric names this package writes; storage uses
// it to restore counters at start-up.
const SeriesPattern = "istio_.*|meshlens_(service|instance|endpoint)_.*|traces_service_graph_.*|traces_span_metrics_.*"

// Aggregator turns calls into series. It implements pipeline.CallConsumer.
type Aggregator struct {
	cfg    Config
	app    storage.Appendable
	logger *slog.Logger

	mu      sync.Mutex
	epoch   uint64
	restore map[uint64]float64
	fam     families
	// logged is the flush epoch in which each service of each tenant last
	// appeared in an access log or mesh report (bounded by
	// MaxSeriesPerFamily).
	logged map[loggedKey]uint64

	// flushSem admits one flush at a time (refs belong to the flusher); a
	// channel so that Sync can give up waiting for it.
	flushSem chan struct{}
	buf      []float64
	// gen numbers flush snapshots (under mu); committed is the newest
	// snapshot whose samples are in storage, lastTs the newest timestamp
	// written (both under flushSem).
	gen       uint64
	committed uint64
	lastTs    int64

	flushes      prometheus.Counter
	flushErrors  prometheus.Counter
	appended     prometheus.Counter
	flushSeconds prometheus.Histogram
	seriesGauge  *prometheus.GaugeVec
	overflowCtr  *prometheus.GaugeVec
}

// New creates an aggregator writing to app. restore holds the last values of
// its series (see metricstore.Store.LastValues) and may be nil.
func New(cfg Config, app storage.Appendable, restore map[uint64]float64, reg prometheus.Registerer, logger *slog.Logger) *Aggregator {
	if restore == nil {
		restore = map[uint64]float64{}
	}
	a := &Aggregator{
		cfg:      cfg,
		app:      app,
		logger:   logger,
		restore:  restore,
		epoch:    1,
		fam:      newFamilies(cfg.MaxSeriesPerFamily),
		logged:   map[loggedKey]uint64{},
		flushSem: make(chan struct{}, 1),
		flushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_aggregator_flushes_total", Help: "Aggregation flushes to storage."}),
		flushErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_aggregator_flush_errors_total", Help: "Aggregation flushes that failed to commit."}),
		appended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_aggregator_samples_appended_total", Help: "Samples written to storage by the aggregator."}),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshlens_aggregator_flush_duration_seconds", Help: "Time to write one flush.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)}),
		seriesGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshlens_aggregator_entities", Help: "Label combinations held per metric family."}, []string{"family"}),
		overflowCtr: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshlens_aggregator_overflow_total", Help: "Observations dropped because a family reached max_series_per_family."}, []string{"family"}),
	}
	if reg != nil {
		reg.MustRegister(a.flushes, a.flushErrors, a.appended, a.flushSeconds, a.seriesGauge, a.overflowCtr)
	}
	return a
}

// ConsumeCalls aggregates calls. It never blocks on storage.
func (a *Aggregator) ConsumeCalls(_ context.Context, calls []model.Call) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range calls {
		a.fam.add(&calls[i], a)
	}
	return nil
}

// loggedKey is a service of a tenant: one tenant's access logs never hide
// another tenant's span-derived calls.
type loggedKey struct{ tenant, service string }

func (a *Aggregator) markLogged(tenant, service string) {
	if service == "" || service == model.Unknown {
		return
	}
	k := loggedKey{tenant, service}
	if _, ok := a.logged[k]; ok || len(a.logged) < a.cfg.MaxSeriesPerFamily {
		a.logged[k] = a.epoch
	}
}

// loggedRecently reports whether service appeared in access logs within
// StaleAfter. Istio names a span's service "<canonical>.<namespace>", so
// the name before the first dot is tried too.
func (a *Aggregator) loggedRecently(tenant, service string) bool {
	if service == "" || service == model.Unknown {
		return false
	}
	stale := uint64(a.cfg.StaleAfter / a.cfg.FlushInterval)
	short, _, _ := strings.Cut(service, ".")
	for _, name := range [2]string{service, short} {
		if e, ok := a.logged[loggedKey{tenant, name}]; ok && a.epoch-e <= stale {
			return true
		}
	}
	return false
}

// ConsumeSpanMetrics aggregates span metrics (traces_span_metrics_*) and
// paired service-graph edges (traces_service_graph_*). An edge touching a
// service that access logs already cover is skipped, as the logs count
// those requests.
func (a *Aggregator) ConsumeSpanMetrics(_ context.Context, spans []spancalls.SpanMetric, edges []spancalls.GraphEdge) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := &a.fam
	for i := range spans {
		s := &spans[i]
		e := f.spans.get(spanKey{tenant: s.Tenant, service: s.ServiceName, name: s.SpanName, kind: s.SpanKind, status: s.StatusCode}, a.epoch, a.restore)
		if e == nil {
			continue
		}
		e.add(f.smCalls, 1)
		e.observe(&f.smDur, float64(s.Duration)/1e6)
	}
	for i := range edges {
		ed := &edges[i]
		if a.loggedRecently(ed.Tenant, ed.Client) || a.loggedRecently(ed.Tenant, ed.Server) {
			continue
		}
		e := f.graph.get(graphKey{tenant: ed.Tenant, client: ed.Client, server: ed.Server, connType: ed.ConnectionType}, a.epoch, a.restore)
		if e == nil {
			continue
		}
		e.add(f.gReq, 1)
		if ed.Failed {
			e.add(f.gFailed, 1)
		}
		if ed.ServerDuration > 0 {
			e.observe(&f.gServer, ed.ServerDuration.Seconds())
		}
		if ed.ClientDuration > 0 {
			e.observe(&f.gClient, ed.ClientDuration.Seconds())
		}
	}
	return nil
}

func (a *Aggregator) apdexT(service string) float64 {
	if d, ok := a.cfg.ApdexThresholds[service]; ok {
		return float64(d) / float64(time.Millisecond)
	}
	return float64(a.cfg.ApdexThreshold) / float64(time.Millisecond)
}

// Run flushes at every multiple of the flush interval until ctx ends, then
// returns. Call Flush once more after the producers have drained.
func (a *Aggregator) Run(ctx context.Context) {
	iv := a.cfg.FlushInterval
	for {
		now := time.Now()
		next := now.Truncate(iv).Add(iv)
		t := time.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := a.Flush(ctx, next); err != nil {
			a.logger.Error("flush aggregated metrics", "err", err)
		}
	}
}

// pending is one entity to write in a flush.
type pending struct {
	e      *entity
	l      *layout
	values []float64
}

// Flush writes every series that received data within StaleAfter, stamped
// at ts, and commits them in one storage transaction.
func (a *Aggregator) Flush(ctx context.Context, ts time.Time) error {
	if err := a.lockFlush(ctx); err != nil {
		return err
	}
	defer a.unlockFlush()
	return a.flush(ctx, ts, true)
}

// Sync returns once everything ConsumeCalls and ConsumeSpanMetrics accepted
// before Sync was called is committed to storage (the TSDB WAL): it waits
// for a flush that snapshots after the call, forcing one if none is under
// way. Concurrent calls share flushes: each waits for the flush lock, then
// returns at once if a flush that began after its call has committed
// meanwhile. A forced flush writes at the current time and does not advance
// the staleness clock, which only periodic flushes do.
func (a *Aggregator) Sync(ctx context.Context) error {
	a.mu.Lock()
	target := a.gen + 1
	a.mu.Unlock()
	if err := a.lockFlush(ctx); err != nil {
		return err
	}
	defer a.unlockFlush()
	if a.committed >= target {
		return nil
	}
	return a.flush(ctx, time.Now(), false)
}

func (a *Aggregator) lockFlush(ctx context.Context) error {
	select {
	case a.flushSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the aggregator flush: %w", ctx.Err())
	}
}

func (a *Aggregator) unlockFlush() { <-a.flushSem }

// flush runs with flushSem held. advance moves the staleness clock (one
// epoch per flush interval).
func (a *Aggregator) flush(ctx context.Context, ts time.Time, advance bool) error {
	start := time.Now()
	// Timestamps only grow: a sample at or before the last one written
	// would be refused as a duplicate or kept out of order behind a newer
	// (smaller) counter value, and a Sync would wrongly believe it stored.
	t := ts.UnixMilli()
	if t <= a.lastTs {
		t = a.lastTs + 1
	}

	// Snapshot under the ingest lock, write outside it so ingestion never
	// waits on storage.
	a.mu.Lock()
	epoch := a.epoch
	if advance {
		a.epoch++
	}
	a.gen++
	gen := a.gen
	staleEpochs := uint64(a.cfg.StaleAfter / a.cfg.FlushInterval)
	evictEpochs := uint64(a.cfg.EvictAfter / a.cfg.FlushInterval)
	var work []pending
	total := 0
	a.fam.each(func(name string, l *layout, m func(func(e *entity) bool), overflow uint64, size int) {
		a.seriesGauge.WithLabelValues(name).Set(float64(size))
		a.overflowCtr.WithLabelValues(name).Set(float64(overflow))
		m(func(e *entity) bool {
			if epoch-e.touched > evictEpochs {
				return false // evict
			}
			// Periodic flushes write every live series (regular
			// samples, no false staleness); forced ones only what
			// changed, which is all a Sync needs.
			if epoch-e.touched <= staleEpochs && (advance || e.dirty) {
				e.dirty = false
				work = append(work, pending{e: e, l: l})
				total += l.n
			}
			return true
		})
	})
	if cap(a.buf) < total {
		a.buf = make([]float64, total)
	}
	buf := a.buf[:total]
	for i := range work {
		n := work[i].l.n
		work[i].values = buf[:n:n]
		buf = buf[n:]
		work[i].e.values(work[i].l, work[i].values)
	}
	a.mu.Unlock()

	if len(work) == 0 {
		a.committed = gen
		return nil
	}
	// On failure the snapshot's entities are dirty again, so that the
	// next forced flush retries them rather than reporting them stored.
	redirty := func() {
		a.mu.Lock()
		for _, w := range work {
			w.e.dirty = true
		}
		a.mu.Unlock()
	}
	app := a.app.Appender(ctx)
	n := 0
	for _, w := range work {
		for i, v := range w.values {
			ref, err := app.Append(w.e.refs[i], w.e.lsets[i], t, v)
			if err != nil {
				if errors.Is(err, storage.ErrOutOfOrderSample) || errors.Is(err, storage.ErrDuplicateSampleForTimestamp) || errors.Is(err, storage.ErrTooOldSample) {
					continue
				}
				_ = app.Rollback()
				redirty()
				a.flushErrors.Inc()
				return fmt.Errorf("append %s: %w", w.e.lsets[i], err)
			}
			w.e.refs[i] = ref
			n++
		}
	}
	if err := app.Commit(); err != nil {
		redirty()
		a.flushErrors.Inc()
		return fmt.Errorf("commit %d samples: %w", n, err)
	}
	a.committed = gen
	a.lastTs = t
	a.flushes.Inc()
	a.appended.Add(float64(n))
	a.flushSeconds.Observe(time.Since(start).Seconds())
	return nil
}

// statusText interns the decimal form of common status codes so the hot
// path does not allocate a string per call.
type statusText [600]string

func newStatusText() *statusText {
	var s statusText
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return &s
}

func (s *statusText) get(code int) string {
	if code >= 0 && code < len(s) {
		return s[code]
	}
	return strconv.Itoa(code)
}

func labelFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
