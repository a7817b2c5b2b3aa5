package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Telemetry holds meshlens's self-metrics for every stage. One instance is
// created per server and registered on the server's own registry (never the
// global one), so tests can run several servers in one process.
type Telemetry struct {
	accepted     *prometheus.CounterVec
	refused      *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	queueDepth   *prometheus.GaugeVec
	stageLatency *prometheus.HistogramVec
}

// NewTelemetry creates the self-metrics and registers them on reg.
func NewTelemetry(reg prometheus.Registerer) *Telemetry {
	t := &Telemetry{
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_receiver_accepted_items_total",
			Help: "Items (log entries, spans, metric samples) accepted by a receiver.",
		}, []string{"receiver", "transport"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_receiver_refused_items_total",
			Help: "Items a receiver refused, by reason (malformed, overloaded, shutting_down, ...).",
		}, []string{"receiver", "transport", "reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_pipeline_dropped_items_total",
			Help: "Items dropped after acceptance, by stage and reason.",
		}, []string{"stage", "reason"}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshlens_queue_depth_batches",
			Help: "Batches waiting in a pipeline queue.",
		}, []string{"queue"}),
		stageLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meshlens_stage_duration_seconds",
			Help:    "Time a pipeline stage spent on one batch.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10),
		}, []string{"stage"}),
	}
	reg.MustRegister(t.accepted, t.refused, t.dropped, t.queueDepth, t.stageLatency)
	return t
}

// Receiver returns the counters of one receiver on one transport.
func (t *Telemetry) Receiver(name, transport string) *ReceiverTelemetry {
	return &ReceiverTelemetry{
		t:         t,
		name:      name,
		transport: transport,
		accepted:  t.accepted.WithLabelValues(name, transport),
	}
}

// Dropped counts n items lost after acceptance at stage for reason.
func (t *Telemetry) Dropped(stage, reason string, n int) {
	t.dropped.WithLabelValues(stage, reason).Add(float64(n))
}

// ObserveStage records how long a stage took on one batch.
func (t *Telemetry) ObserveStage(stage string, seconds float64) {
	t.stageLatency.WithLabelValues(stage).Observe(seconds)
}

// ReceiverTelemetry counts what one receiver accepted and refused.
type ReceiverTelemetry struct {
	t               *Telemetry
	name, transport string
	accepted        prometheus.Counter
}

// Accepted counts n items accepted.
func (r *ReceiverTelemetry) Accepted(n int) { r.accepted.Add(float64(n)) }

// Refused counts n items refused for reason.
func (r *ReceiverTelemetry) Refused(n int, reason string) {
	r.t.refused.WithLabelValues(r.name, r.transport, reason).Add(float64(n))
}

// RefusedErr counts n items refused because of err, naming the reason from
// the error's class.
func (r *ReceiverTelemetry) RefusedErr(n int, err error) {
	r.Refused(n, Reason(err))
}

// Reason names the class of a pipeline error for the refused counter.
func Reason(err error) string {
	switch HTTPStatus(err) {
	case 429:
		return "overloaded"
	case 400:
		return "malformed"
	}
	return "unavailable"
}
