package recommend

import "time"

// Kind is the kind of a recommendation.
type Kind string

// Kinds of recommendation. Misconfig items flag a setting in force that
// traffic shows to be wrong; chain items carry inconsistencies along call
// paths and the deadline each hop should propagate.
const (
	KindTimeout   Kind = "timeout"
	KindRetry     Kind = "retry"
	KindRateLimit Kind = "ratelimit"
	KindChain     Kind = "chain"
	KindMisconfig Kind = "misconfig"
)

// Edge names a service→service edge, optionally one endpoint of the
// destination.
type Edge struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Endpoint    string `json:"endpoint,omitempty"`
}

// Setting is a value of a mesh setting, current or recommended. Only the
// fields of the recommendation's kind are set.
type Setting struct {
	TimeoutMs           float64 `json:"timeout_ms,omitempty"`
	Retries             int     `json:"retries,omitempty"`
	PerTryTimeoutMs     float64 `json:"per_try_timeout_ms,omitempty"`
	BackoffMs           float64 `json:"backoff_ms,omitempty"`
	RetryOn             string  `json:"retry_on,omitempty"`
	RetryBudgetPercent  float64 `json:"retry_budget_percent,omitempty"`
	MinRetryConcurrency int     `json:"min_retry_concurrency,omitempty"`
	HedgeAfterMs        float64 `json:"hedge_after_ms,omitempty"`
	RatePerSecond       float64 `json:"rate_per_second,omitempty"`
	Burst               int     `json:"burst,omitempty"`
	MaxConcurrency      int     `json:"max_concurrency,omitempty"`
	DeadlineMs          float64 `json:"deadline_ms,omitempty"`
	// Disabled marks an explicitly absent setting (no timeout, no limit).
	Disabled bool `json:"disabled,omitempty"`
	// Source says where a current value was read: "istio-yaml",
	// "response-flags" (inferred from UT), "x-envoy-expected-rq-timeout-ms",
	// or "istio-default".
	Source string `json:"source,omitempty"`
}

// Bounds is a confidence interval for the recommended value.
type Bounds struct {
	Lower float64 `json:"lower"`
	Upper float64 `json:"upper"`
	// Level is the confidence of the interval, e.g. 0.95.
	Level float64 `json:"level"`
	Unit  string  `json:"unit"`
}

// Evidence is the data a recommendation was computed from.
type Evidence struct {
	WindowSeconds float64 `json:"window_seconds"`
	Samples       uint64  `json:"samples"`
	// Percentile is the latency percentile the value was read at (99.9 for a
	// 0.1% false-timeout target).
	Percentile float64 `json:"percentile,omitempty"`
	// MarkerMs is the value marked on the histogram.
	MarkerMs    float64          `json:"marker_ms,omitempty"`
	P50Ms       float64          `json:"p50_ms,omitempty"`
	P99Ms       float64          `json:"p99_ms,omitempty"`
	Histogram   []Bucket         `json:"histogram,omitempty"`
	ErrorRate   float64          `json:"error_rate,omitempty"`
	Failures    map[string]int64 `json:"failures,omitempty"`
	Idempotent  float64          `json:"idempotent_share,omitempty"`
	RatePerSec  float64          `json:"rate_per_second,omitempty"`
	PeakPerSec  float64          `json:"peak_per_second,omitempty"`
	KneePerSec  float64          `json:"knee_per_second,omitempty"`
	HourlyPeaks []float64        `json:"hourly_peaks_per_second,omitempty"`
}

// Inconsistency is a pair (or path) of settings that contradict each other.
type Inconsistency struct {
	// Kind is "inverted_timeout", "retries_exceed_timeout",
	// "retry_amplification" or "limit_above_downstream".
	Kind   string   `json:"kind"`
	Path   []string `json:"path"`
	Detail string   `json:"detail"`
	// Have and Need are the values compared (ms, or requests per second,
	// or the amplification factor).
	Have float64 `json:"have"`
	Need float64 `json:"need"`
}

// Recommendation is one recommended (or flagged) setting with its
// explanation.
type Recommendation struct {
	ID              string          `json:"id"`
	Kind            Kind            `json:"kind"`
	Service         string          `json:"service"`
	Edge            *Edge           `json:"edge,omitempty"`
	Current         *Setting        `json:"current,omitempty"`
	Recommended     *Setting        `json:"recommended,omitempty"`
	Confidence      *Bounds         `json:"confidence,omitempty"`
	Explanation     string          `json:"explanation"`
	Evidence        *Evidence       `json:"evidence,omitempty"`
	Inconsistencies []Inconsistency `json:"inconsistencies,omitempty"`
	Severity        string          `json:"severity,omitempty"`
	UpdatedAt       time.Time       `json:"updated_at"`
}

// Change is one recorded change of a published recommendation.
type Change struct {
	At     time.Time `json:"at"`
	ID     string    `json:"id"`
	Kind   Kind      `json:"kind"`
	From   *Setting  `json:"from,omitempty"`
	To     *Setting  `json:"to,omitempty"`
	Reason string    `json:"reason"`
}

// Filter selects recommendations. Empty fields match everything; Service
// matches the service, the edge's source or destination, by full name
// ("reviews.default") or short name ("reviews").
type Filter struct {
	Service string
	Kind    Kind
}

func (f Filter) match(r *Recommendation) bool {
	if f.Kind != "" && f.Kind != r.Kind {
		return false
	}
	if f.Service == "" {
		return true
	}
	if svcMatch(f.Service, r.Service) {
		return true
	}
	return r.Edge != nil && (svcMatch(f.Service, r.Edge.Source) || svcMatch(f.Service, r.Edge.Destination))
}

func svcMatch(want, name string) bool {
	if want == name {
		return true
	}
	if len(name) > len(want) && name[:len(want)] == want && name[len(want)] == '.' {
		return true
	}
	return false
}
