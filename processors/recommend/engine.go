// Package recommend turns the latency, error and traffic data of every
// edge of the mesh into timeout, retry and rate-limit settings an operator
// can apply, explains each one, checks them for consistency along call
// paths, and flags the settings in force that traffic shows to be wrong.
//
// The Engine is a pipeline.CallConsumer: it keeps, per edge and per
// service, a sliding window of log-linear latency histograms in time slots
// and a week of hourly rate history, and recomputes all recommendations on
// a ticker with hysteresis so they change smoothly.
package recommend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/pipeline"
)

// Config tunes the engine. Zero values take the defaults documented on
// each field.
type Config struct {
	// Window is the sliding window timeouts and retries are computed from
	// (default 30m).
	Window time.Duration
	// Slot is the granularity of the window (default 1m).
	Slot time.Duration
	// RecomputeEvery is the ticker period of Run (default 30s).
	RecomputeEvery time.Duration
	// TargetFalseTimeout is the share of requests that would have succeeded
	// that a timeout may cut (default 0.001).
	TargetFalseTimeout float64
	// MinTailSamples is how many samples must lie beyond a percentile for it
	// to be estimated (default 50: p99.9 needs 50,000 samples, and its 95%
	// interval is then about ±28% in tail probability).
	MinTailSamples int
	// Headroom multiplies the historical peak rate (default 1.5).
	Headroom float64
	// KneeLatencyFactor is how far mean latency must climb above its
	// low-load baseline to mark the knee (default 1.3).
	KneeLatencyFactor float64
	// KneeErrorRate is the error rate that marks the knee (default 0.02).
	KneeErrorRate float64
	// RetryBudgetPercent caps retries as a share of requests (default 20).
	RetryBudgetPercent float64
	// MinRetryConcurrency is the retry budget's floor (default 1, the
	// lowest Istio expresses; Envoy's own default of 3 lets a fast-failing
	// outage through nearly unbudgeted, see retryBackoff).
	MinRetryConcurrency int
	// MinRetriesPerSecond is the retry rate the budget's floor may admit on
	// low-traffic edges, where the budget percentage of requests would be
	// less than this (default 10, 20% of 50 req/s). It sets the retry
	// backoff there.
	MinRetriesPerSecond float64
	// MaxRetries caps recommended retries (default 2).
	MaxRetries int
	// Backoff is the retry base interval (default 25ms, Envoy's).
	Backoff time.Duration
	// HedgeMaxRate is the load under which hedging is suggested for long
	// tails (default 20 req/s).
	HedgeMaxRate float64
	// MaxEdges caps the number of edge series (default 20,000); MaxServices
	// caps service series (default 5,000); MaxEndpoints caps the endpoints
	// kept per edge and per service (default 20; -1 keeps no per-endpoint
	// series).
	MaxEdges, MaxServices, MaxEndpoints int
	// RecentWindow is how far back the engine looks for a rise in latency
	// that the sliding window does not show yet (default 5 min): a
	// significant excess of recent successes above the window's timeout
	// estimate raises the timeout at once, and no timeout is lowered
	// within RecentWindow of such a rise (see recentShift).
	RecentWindow time.Duration
	// ChangeThreshold is the relative change a value must show before it is
	// republished (default 0.1); Confirmations is how many consecutive
	// recomputations must agree (default 2).
	ChangeThreshold float64
	Confirmations   int
	// HistoryLimit bounds the change history (default 1000; negative keeps
	// none).
	HistoryLimit int
	// ChainRules tunes the chain checker.
	ChainRules ChainRules
	// Now is the clock (default time.Now); tests and replays set it.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	deff := func(v *float64, d float64) {
		if *v <= 0 {
			*v = d
		}
	}
	defi := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Window, 30*time.Minute)
	def(&c.Slot, time.Minute)
	def(&c.RecomputeEvery, 30*time.Second)
	def(&c.Backoff, 25*time.Millisecond)
	def(&c.RecentWindow, 5*time.Minute)
	deff(&c.TargetFalseTimeout, 0.001)
	deff(&c.Headroom, 1.5)
	deff(&c.KneeLatencyFactor, 1.3)
	deff(&c.KneeErrorRate, 0.02)
	deff(&c.RetryBudgetPercent, 20)
	deff(&c.HedgeMaxRate, 20)
	deff(&c.MinRetriesPerSecond, 10)
	deff(&c.ChangeThreshold, 0.1)
	defi(&c.MinTailSamples, 50)
	defi(&c.MinRetryConcurrency, 1)
	defi(&c.MaxRetries, 2)
	defi(&c.MaxEdges, 20000)
	defi(&c.MaxServices, 5000)
	defi(&c.MaxEndpoints, 20)
	defi(&c.Confirmations, 2)
	defi(&c.HistoryLimit, 1000)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// edgeKey identifies an edge series. Names are kept apart rather than
// joined so that a lookup per call allocates nothing.
type edgeKey struct {
	srcName, srcNS, dstName, dstNS, endpoint string
	view                                     view
}

// svcKey identifies a service (or service endpoint) series.
type svcKey struct {
	name, ns, endpoint string
	view               view
}

type pairKey struct{ srcName, srcNS, dstName, dstNS string }

// Engine computes recommendations from calls. Create it with New, feed it
// with ConsumeCalls, and run Run (or call Recompute) to refresh them.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	slots   int
	metrics *engineMetrics

	mu        sync.Mutex
	edges     map[edgeKey]*series
	svcs      map[svcKey]*series
	endpoints map[pairKey]int
	latest    time.Time // newest call start seen

	pubMu   sync.RWMutex
	current *CurrentConfig
	pub     map[string]*published
	recs    []Recommendation
	history []Change
	histPos int
	recIncs []Inconsistency
	lastRun time.Time
}

type published struct {
	rec     Recommendation
	pending int
	// raisedAt is when a recent rise in latency was last seen for this
	// timeout; it is not lowered within RecentWindow of that.
	raisedAt time.Time
	// censRaisedAt is when the cut rate last showed a rise (censor.go);
	// the timeout is not lowered within Window of that.
	censRaisedAt time.Time
	seen         bool
}

type engineMetrics struct {
	calls, dropped prometheus.Counter
	badTime        prometheus.Counter
	edges          prometheus.Gauge
	recompute      prometheus.Histogram
	changes        prometheus.Counter
}

var errNilConfig = errors.New("recommend: nil current config")

// New creates an engine. reg receives the engine's self-metrics (nil to
// skip them); log may be nil.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Engine, error) {
	cfg = cfg.withDefaults()
	if cfg.Window < cfg.Slot {
		return nil, fmt.Errorf("recommend: window %v shorter than slot %v", cfg.Window, cfg.Slot)
	}
	if cfg.TargetFalseTimeout >= 0.5 {
		return nil, fmt.Errorf("recommend: target false-timeout rate %v must be below 0.5", cfg.TargetFalseTimeout)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		cfg:       cfg,
		log:       log,
		slots:     int(cfg.Window / cfg.Slot),
		edges:     map[edgeKey]*series{},
		svcs:      map[svcKey]*series{},
		endpoints: map[pairKey]int{},
		pub:       map[string]*published{},
		history:   make([]Change, 0, max(0, min(cfg.HistoryLimit, 64))),
	}
	m := &engineMetrics{
		calls: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshlens_recommend_calls_total",
			Help: "Calls the recommendation engine has recorded."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshlens_recommend_dropped_calls_total",
			Help: "Calls not recorded because the edge or service cap was reached."}),
		badTime: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshlens_recommend_bad_timestamp_calls_total",
			Help: "Calls not recorded because they ended more than 5 minutes in the future or more than 7 days ago."}),
		edges: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshlens_recommend_edges",
			Help: "Edge series kept by the recommendation engine."}),
		recompute: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "meshlens_recommend_recompute_seconds",
			Help: "Time to recompute all recommendations.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshlens_recommend_changes_total",
			Help: "Published recommendation changes."}),
	}
	if reg != nil {
		if err := errors.Join(reg.Register(m.calls), reg.Register(m.dropped), reg.Register(m.badTime), reg.Register(m.edges),
			reg.Register(m.recompute), reg.Register(m.changes)); err != nil {
			return nil, fmt.Errorf("recommend: register metrics: %w", err)
		}
	}
	e.metrics = m
	return e, nil
}

var _ pipeline.CallConsumer = (*Engine)(nil)

// ConsumeCalls records calls. It keeps nothing of the slice.
func (e *Engine) ConsumeCalls(_ context.Context, calls []model.Call) error {
	slotNs := int64(e.cfg.Slot)
	// A call stamped far in the future would rotate its series past all
	// its data, one from before the history is useless: both are dropped.
	now := e.cfg.Now()
	newest, oldest := now.Add(5*time.Minute), now.Add(-HistoryHours*time.Hour)
	e.mu.Lock()
	defer e.mu.Unlock()
	var dropped, badTime int
	for i := range calls {
		c := &calls[i]
		if c.Protocol == model.ProtocolTCP || c.Destination.IsUnknown() {
			continue
		}
		v := viewClient
		if c.DetectPoint == model.DetectServer {
			v = viewServer
		}
		t := c.Start.Add(c.Duration)
		if t.After(newest) || t.Before(oldest) {
			badTime++
			continue
		}
		if t.After(e.latest) {
			e.latest = t
		}
		slotIdx := t.UnixNano() / slotNs
		minIdx := t.Unix() / 60
		o := classify(c)
		src := c.Source
		if src.Service == "" {
			src.Service = model.Unknown
		}
		k := edgeKey{srcName: src.Service, srcNS: src.Namespace, dstName: c.Destination.Service, dstNS: c.Destination.Namespace, view: v}
		if s := e.edge(k, c); s != nil {
			s.record(slotIdx, minIdx, &o)
		} else {
			dropped++
		}
		if c.Endpoint != "" && e.cfg.MaxEndpoints > 0 {
			k.endpoint = c.Endpoint
			if s := e.edge(k, c); s != nil {
				s.record(slotIdx, minIdx, &o)
			}
		}
		sk := svcKey{name: c.Destination.Service, ns: c.Destination.Namespace, view: v}
		if s := e.svc(sk); s != nil {
			s.record(slotIdx, minIdx, &o)
		}
		if c.Endpoint != "" && e.cfg.MaxEndpoints > 0 {
			sk.endpoint = c.Endpoint
			if _, ok := e.svcs[sk]; ok || e.endpoints[pairKey{dstName: sk.name, dstNS: sk.ns}] < e.cfg.MaxEndpoints {
				if !ok {
					e.endpoints[pairKey{dstName: sk.name, dstNS: sk.ns}]++
				}
				if s := e.svc(sk); s != nil {
					s.record(slotIdx, minIdx, &o)
				}
			}
		}
	}
	e.metrics.calls.Add(float64(len(calls) - dropped - badTime))
	e.metrics.dropped.Add(float64(dropped))
	e.metrics.badTime.Add(float64(badTime))
	if badTime > 0 {
		e.log.Debug("recommend: calls with a timestamp outside [now-7d, now+5m] dropped", "count", badTime)
	}
	e.metrics.edges.Set(float64(len(e.edges)))
	return nil
}

func (e *Engine) edge(k edgeKey, c *model.Call) *series {
	if s, ok := e.edges[k]; ok {
		return s
	}
	if len(e.edges) >= e.cfg.MaxEdges {
		return nil
	}
	if k.endpoint != "" {
		pk := pairKey{k.srcName, k.srcNS, k.dstName, k.dstNS}
		if e.endpoints[pk] >= e.cfg.MaxEndpoints {
			return nil
		}
		e.endpoints[pk]++
	}
	s := newSeries(e.slots, false)
	s.method = c.Method
	e.edges[k] = s
	return s
}

func (e *Engine) svc(k svcKey) *series {
	if s, ok := e.svcs[k]; ok {
		return s
	}
	if len(e.svcs) >= e.cfg.MaxServices {
		return nil
	}
	s := newSeries(e.slots, true)
	e.svcs[k] = s
	return s
}

// ObserveExpectedTimeout records the x-envoy-expected-rq-timeout-ms a proxy
// reported for calls from source to destination, for receivers that see
// the header (model.Call does not carry it).
func (e *Engine) ObserveExpectedTimeout(source, destination model.ServiceID, d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := edgeKey{srcName: source.Name, srcNS: source.Namespace, dstName: destination.Name, dstNS: destination.Namespace}
	if s, ok := e.edges[k]; ok {
		s.expected = d
	}
}

// SetCurrentConfig replaces the settings in force (see LoadIstioDir); the
// next recomputation compares against them.
func (e *Engine) SetCurrentConfig(c *CurrentConfig) error {
	if c == nil {
		return errNilConfig
	}
	e.pubMu.Lock()
	e.current = c
	e.pubMu.Unlock()
	return nil
}

// CurrentConfig returns the settings in force last set, or an empty
// config.
func (e *Engine) CurrentConfig() *CurrentConfig {
	e.pubMu.RLock()
	defer e.pubMu.RUnlock()
	if e.current == nil {
		return NewCurrentConfig()
	}
	return e.current
}

// Run recomputes every Config.RecomputeEvery until ctx ends.
func (e *Engine) Run(ctx context.Context) error {
	t := time.NewTicker(e.cfg.RecomputeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			e.Recompute(e.cfg.Now())
		}
	}
}

// Recommendations returns the published recommendations matching f,
// ordered by kind, service and edge.
func (e *Engine) Recommendations(f Filter) []Recommendation {
	e.pubMu.RLock()
	defer e.pubMu.RUnlock()
	out := make([]Recommendation, 0, len(e.recs))
	for i := range e.recs {
		if f.match(&e.recs[i]) {
			out = append(out, e.recs[i])
		}
	}
	return out
}

// publishedTimeouts returns the published timeouts (ms) by ID.
func (e *Engine) publishedTimeouts() map[string]float64 {
	e.pubMu.RLock()
	defer e.pubMu.RUnlock()
	out := make(map[string]float64, len(e.pub))
	for id, p := range e.pub {
		if p.rec.Kind == KindTimeout && p.rec.Recommended != nil {
			out[id] = p.rec.Recommended.TimeoutMs
		}
	}
	return out
}

// History returns the recorded changes, newest first, at most limit (all
// if limit <= 0), matching f.
func (e *Engine) History(f Filter, limit int) []Change {
	e.pubMu.RLock()
	defer e.pubMu.RUnlock()
	n := len(e.history)
	size := n
	if limit > 0 && limit < n {
		size = limit
	}
	out := make([]Change, 0, size)
	for i := 0; i < n; i++ {
		// history is a ring: the newest entry is just before histPos.
		c := e.history[(e.histPos-1-i+2*n)%n]
		if f.Kind != "" && c.Kind != f.Kind {
			continue
		}
		if f.Service != "" && !idMatches(c.ID, f.Service) {
			continue
		}
		out = append(out, c)
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out
}

// LastRecompute is when recommendations were last computed.
func (e *Engine) LastRecompute() time.Time {
	e.pubMu.RLock()
	defer e.pubMu.RUnlock()
	return e.lastRun
}

// RecommendedInconsistencies returns what the chain checker finds in the
// published recommendations themselves; it should always be empty.
func (e *Engine) RecommendedInconsistencies() []Inconsistency {
	e.pubMu.RLock()
	defer e.pubMu.RUnlock()
	return append([]Inconsistency(nil), e.recIncs...)
}

// Config returns the effective configuration.
func (e *Engine) Config() Config { return e.cfg }

func (e *Engine) recordChange(c Change) {
	e.metrics.changes.Inc()
	if e.cfg.HistoryLimit <= 0 {
		return
	}
	if len(e.history) < e.cfg.HistoryLimit {
		e.history = append(e.history, c)
		e.histPos = len(e.history) % e.cfg.HistoryLimit
		return
	}
	e.history[e.histPos] = c
	e.histPos = (e.histPos + 1) % e.cfg.HistoryLimit
}
