// Package envoymetrics receives Envoy's Metrics Service v3
// (envoy.service.metrics.v3.MetricsService/StreamMetrics) and stores every
// counter, gauge, histogram and summary as Prometheus series named as
// Envoy's own /stats/prometheus endpoint names them:
//
//	cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_total
//	→ envoy_cluster_upstream_rq_total{envoy_cluster_name="outbound|9080||reviews.default.svc.cluster.local"}
//
// Tags are taken out of stat names with Envoy's default tag extraction rules
// (reimplemented for RE2, see tags.go), plus Istio's "key=.=value;.;" in-name
// tags; stats of a custom namespace (Istio's "istiocustom") lose the
// namespace and get no "envoy_" prefix, so istio_requests_total keeps its
// name. Every series is labelled with the proxy's identity from the node in
// the stream's first message: service, namespace, instance (the pod) and
// workload.
//
// Histograms become _bucket{le}/_sum/_count series (with the +Inf bucket
// Envoy leaves implicit) and summaries {quantile}/_sum/_count; le and
// quantile values are written as Prometheus 3 normalises them at scrape
// ("10.0", "+Inf"). Samples carry the message's timestamps, or the receive
// time when a metric has none; each message is one appender transaction.
// Samples stamped more than Config.MaxFutureSkew after or MaxSampleAge
// before the receive time are refused (a proxy's clock is wrong).
//
// Counters are stored as sent: the Envoy sink must report cumulative
// counters (its default), not report_counters_as_deltas. With
// emit_tags_as_labels the names arrive already tag-extracted and are not
// extracted again.
//
// Series limits (Config.MaxSeriesPerProxy, MaxSeriesTotal) count the
// distinct series of connected proxies; a proxy's count is released when
// its last stream ends.
package envoymetrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshlens/meshlens/pipeline"
)

// Config bounds what proxies may store and sets naming details.
type Config struct {
	// MaxSeriesPerProxy is how many distinct series one proxy (node ID) may
	// have while it is connected. Samples of further series are refused
	// and counted (reason "series_limit"). Default 20000.
	MaxSeriesPerProxy int
	// MaxSeriesTotal bounds the series of all connected proxies together.
	// Default 1000000.
	MaxSeriesTotal int
	// MaxFamiliesPerMessage bounds one stream message. Default 50000.
	MaxFamiliesPerMessage int
	// MaxStatNameLength refuses longer stat names. Default 8192.
	MaxStatNameLength int
	// MaxCachedNames bounds the tag-extraction cache shared by all
	// streams. Default 200000.
	MaxCachedNames int
	// ClusterDomain is the Kubernetes cluster domain used to find where an
	// Istio cluster name ends (".svc.<domain>"). Default "cluster.local".
	ClusterDomain string
	// CustomNamespaces are stat prefixes that Envoy strips rather than
	// adding "envoy_". Default ["istiocustom", "wasmcustom"].
	CustomNamespaces []string
	// MaxFutureSkew refuses samples stamped further than this after the
	// receive time (reason "out_of_window"). One sample far in the future
	// moves the TSDB head's end there, after which the head refuses every
	// other proxy's current samples as too old; a proxy whose clock runs
	// ahead must not stop ingestion for all. Default 5m, half the metric
	// store's out-of-order window.
	MaxFutureSkew time.Duration
	// MaxSampleAge refuses samples stamped earlier than this before the
	// receive time (reason "out_of_window"). The TSDB head takes in-order
	// samples no older than one hour before its newest one anyway; the
	// bound also holds on an empty head, which would otherwise take a
	// 1970 sample and start its blocks there. Default 1h.
	MaxSampleAge time.Duration
}

func (c Config) withDefaults() Config {
	if c.MaxSeriesPerProxy <= 0 {
		c.MaxSeriesPerProxy = 20000
	}
	if c.MaxSeriesTotal <= 0 {
		c.MaxSeriesTotal = 1000000
	}
	if c.MaxFamiliesPerMessage <= 0 {
		c.MaxFamiliesPerMessage = 50000
	}
	if c.MaxStatNameLength <= 0 {
		c.MaxStatNameLength = 8192
	}
	if c.MaxCachedNames <= 0 {
		c.MaxCachedNames = 200000
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = "cluster.local"
	}
	if c.CustomNamespaces == nil {
		c.CustomNamespaces = []string{"istiocustom", "wasmcustom"}
	}
	if c.MaxFutureSkew <= 0 {
		c.MaxFutureSkew = 5 * time.Minute
	}
	if c.MaxSampleAge <= 0 {
		c.MaxSampleAge = time.Hour
	}
	return c
}

// Receiver serves envoy.service.metrics.v3.MetricsService.
type Receiver struct {
	metricsv3.UnimplementedMetricsServiceServer

	cfg     Config
	app     storage.Appendable
	tel     *pipeline.ReceiverTelemetry
	logger  *slog.Logger
	x       *tagExtractor
	names   *nameCache
	limiter *seriesLimiter
	now     func() time.Time
	warns   pipeline.LogThrottle
}

// New returns a receiver that appends to app. tel may be nil in tests;
// logger may be nil to discard logs.
func New(cfg Config, app storage.Appendable, tel *pipeline.Telemetry, logger *slog.Logger) *Receiver {
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	x := newTagExtractor(cfg.ClusterDomain, cfg.CustomNamespaces)
	r := &Receiver{
		cfg:     cfg,
		app:     app,
		logger:  logger.With("receiver", "envoymetrics"),
		x:       x,
		names:   newNameCache(x, cfg.MaxCachedNames),
		limiter: newSeriesLimiter(cfg.MaxSeriesPerProxy, cfg.MaxSeriesTotal),
		now:     time.Now,
		warns:   pipeline.LogThrottle{Interval: 10 * time.Second},
	}
	if tel != nil {
		r.tel = tel.Receiver("envoymetrics", "grpc")
	}
	return r
}

// Register adds the service to s.
func (r *Receiver) Register(s *grpc.Server) {
	metricsv3.RegisterMetricsServiceServer(s, r)
}

func (r *Receiver) accepted(n int) {
	if r.tel != nil && n > 0 {
		r.tel.Accepted(n)
	}
}

func (r *Receiver) refused(n int, reason string) {
	if r.tel != nil && n > 0 {
		r.tel.Refused(n, reason)
	}
}

// StreamMetrics reads one proxy's stream. The first message must identify
// the proxy (Envoy always sends its node there); later identifiers are
// ignored. Each message is appended and committed on its own, so a failing
// storage loses at most the message in flight, and the stream ends with the
// status pipeline.GRPCStatus gives the error (UNAVAILABLE for a storage
// failure, RESOURCE_EXHAUSTED for pipeline.ErrOverloaded) so that Envoy
// reconnects.
func (r *Receiver) StreamMetrics(stream grpc.ClientStreamingServer[metricsv3.StreamMetricsMessage, metricsv3.StreamMetricsResponse]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return stream.SendAndClose(&metricsv3.StreamMetricsResponse{})
	}
	if err != nil {
		return err
	}
	node := first.GetIdentifier().GetNode()
	if node == nil {
		r.refused(max(1, len(first.GetEnvoyMetrics())), "malformed")
		return status.Error(codes.InvalidArgument, "envoymetrics: the first message of a stream must carry identifier.node")
	}
	proxy := proxyFromNode(node)
	ps := r.limiter.acquire(proxy.key())
	defer r.limiter.release(proxy.key())
	conv := newConverter(r.names, proxy, r.cfg.MaxStatNameLength)
	log := r.logger.With("proxy", proxy.ID)

	for msg := first; ; {
		if err := r.appendMessage(ctx, conv, ps, msg, log); err != nil {
			return err
		}
		msg, err = stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&metricsv3.StreamMetricsResponse{})
		}
		if err != nil {
			return err
		}
	}
}

func (r *Receiver) appendMessage(ctx context.Context, conv *converter, ps *proxySeries, msg *metricsv3.StreamMetricsMessage, log *slog.Logger) error {
	fams := msg.GetEnvoyMetrics()
	if len(fams) == 0 {
		return nil
	}
	if len(fams) > r.cfg.MaxFamiliesPerMessage {
		r.refused(len(fams), "malformed")
		if ok, n := r.warns.Allow(r.now()); ok {
			log.Warn("refused metrics message", "families", len(fams), "limit", r.cfg.MaxFamiliesPerMessage, "warnings_suppressed", n)
		}
		return nil
	}
	app := r.app.Appender(ctx)
	now := r.now()
	defaultTs := now.UnixMilli()
	oldest, newest := now.Add(-r.cfg.MaxSampleAge).UnixMilli(), now.Add(r.cfg.MaxFutureSkew).UnixMilli()
	var (
		ok, limited, rejected, outOfWindow int
		firstRejection                     error
		firstOutOfWindow                   string
	)
	emit := func(l labels.Labels, t int64, v float64) error {
		// Checked before the series limit so that refused samples do not
		// use up the proxy's series.
		if t < oldest || t > newest {
			if outOfWindow == 0 {
				firstOutOfWindow = fmt.Sprintf("%s at %s (%s from the receive time)", l.Get(labels.MetricName),
					time.UnixMilli(t).UTC().Format(time.RFC3339), time.Duration(t-defaultTs)*time.Millisecond)
			}
			outOfWindow++
			return nil
		}
		if !r.limiter.admit(ps, l.Hash()) {
			limited++
			return nil
		}
		if _, err := app.Append(0, l, t, v); err != nil {
			if isSampleError(err) {
				rejected++
				if firstRejection == nil {
					firstRejection = fmt.Errorf("%s: %w", l.Get(labels.MetricName), err)
				}
				return nil
			}
			return err
		}
		ok++
		return nil
	}
	var (
		bad      int
		firstBad error
	)
	for _, mf := range fams {
		b, fb, err := conv.family(mf, defaultTs, emit)
		if err != nil {
			if rerr := app.Rollback(); rerr != nil {
				log.Warn("rollback failed", "error", rerr)
			}
			err = fmt.Errorf("envoymetrics: append: %w", err)
			r.refused(ok, pipeline.Reason(err))
			return pipeline.GRPCStatus(err)
		}
		bad += b
		if firstBad == nil {
			firstBad = fb
		}
	}
	if err := app.Commit(); err != nil {
		err = fmt.Errorf("envoymetrics: commit: %w", err)
		r.refused(ok, pipeline.Reason(err))
		return pipeline.GRPCStatus(err)
	}
	r.accepted(ok)
	r.refused(bad, "malformed")
	r.refused(limited, "series_limit")
	r.refused(rejected, "rejected_by_storage")
	r.refused(outOfWindow, "out_of_window")
	if outOfWindow > 0 {
		if ok, n := r.warns.Allow(now); ok {
			log.Warn("refused samples stamped outside the accepted window; is the proxy's clock right?", "out_of_window", outOfWindow,
				"first", firstOutOfWindow, "max_future_skew", r.cfg.MaxFutureSkew, "max_sample_age", r.cfg.MaxSampleAge,
				"warnings_suppressed", n)
		}
	}
	if bad > 0 || limited > 0 {
		if ok, n := r.warns.Allow(r.now()); ok {
			log.Warn("refused samples", "malformed", bad, "first_malformed", firstBad, "series_limit", limited,
				"max_series_per_proxy", r.cfg.MaxSeriesPerProxy, "max_series_total", r.cfg.MaxSeriesTotal,
				"warnings_suppressed", n)
		}
	}
	if rejected > 0 {
		log.Debug("storage rejected samples", "count", rejected, "first_error", firstRejection)
	}
	return nil
}

// isSampleError reports whether the storage refused one sample (out of
// order, duplicate, too old) rather than failing as a whole.
func isSampleError(err error) bool {
	return errors.Is(err, storage.ErrOutOfOrderSample) ||
		errors.Is(err, storage.ErrOutOfBounds) ||
		errors.Is(err, storage.ErrTooOldSample) ||
		errors.Is(err, storage.ErrDuplicateSampleForTimestamp)
}

// seriesLimiter counts distinct series per connected proxy and in total.
// A proxy's series are forgotten when its last stream ends, so the counts
// bound live memory rather than history.
type seriesLimiter struct {
	mu                    sync.Mutex
	maxPerProxy, maxTotal int
	total                 int
	proxies               map[string]*proxySeries
}

type proxySeries struct {
	refs   int
	series map[uint64]struct{}
}

func newSeriesLimiter(perProxy, total int) *seriesLimiter {
	return &seriesLimiter{maxPerProxy: perProxy, maxTotal: total, proxies: map[string]*proxySeries{}}
}

func (l *seriesLimiter) acquire(key string) *proxySeries {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.proxies[key]
	if p == nil {
		p = &proxySeries{series: map[uint64]struct{}{}}
		l.proxies[key] = p
	}
	p.refs++
	return p
}

func (l *seriesLimiter) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.proxies[key]
	if p == nil {
		return
	}
	p.refs--
	if p.refs <= 0 {
		l.total -= len(p.series)
		delete(l.proxies, key)
	}
}

func (l *seriesLimiter) admit(p *proxySeries, h uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := p.series[h]; ok {
		return true
	}
	if len(p.series) >= l.maxPerProxy || l.total >= l.maxTotal {
		return false
	}
	p.series[h] = struct{}{}
	l.total++
	return true
}
