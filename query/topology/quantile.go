package topology

import (
	"math"
	"slices"
)

// percentiles computes p50, p95 and p99 from merged classic-histogram
// bucket rates (upper bound -> cumulative rate), with the same linear
// interpolation as PromQL's histogram_quantile. Buckets are merged before
// the quantile is taken: averaging percentiles of parts would be wrong.
func percentiles(buckets map[float64]float64) (Latency, bool) {
	if len(buckets) < 2 {
		return Latency{}, false
	}
	les := make([]float64, 0, len(buckets))
	for le := range buckets {
		les = append(les, le)
	}
	slices.Sort(les)
	if !math.IsInf(les[len(les)-1], 1) {
		return Latency{}, false
	}
	counts := make([]float64, len(les))
	running := 0.0
	for i, le := range les {
		// Rates of cumulative buckets can come out non-monotonic after
		// extrapolation; a bucket never holds fewer than the one below.
		running = math.Max(running, buckets[le])
		counts[i] = running
	}
	total := counts[len(counts)-1]
	if total <= 0 {
		return Latency{}, false
	}
	return Latency{
		P50: bucketQuantile(0.50, les, counts),
		P95: bucketQuantile(0.95, les, counts),
		P99: bucketQuantile(0.99, les, counts),
	}, true
}

// bucketQuantile finds the bucket holding rank q*total and interpolates
// linearly inside it. The first bucket starts at 0 (latencies are not
// negative); a rank in the +Inf bucket answers the highest finite bound.
func bucketQuantile(q float64, les, counts []float64) float64 {
	total := counts[len(counts)-1]
	rank := q * total
	b := 0
	for b < len(counts)-1 && counts[b] < rank {
		b++
	}
	if b == len(les)-1 {
		return les[len(les)-2]
	}
	lower, below := 0.0, 0.0
	if b > 0 {
		lower, below = les[b-1], counts[b-1]
	} else if les[0] <= 0 {
		return les[0]
	}
	upper := les[b]
	inBucket := counts[b] - below
	if inBucket <= 0 {
		return upper
	}
	return lower + (upper-lower)*((rank-below)/inBucket)
}
