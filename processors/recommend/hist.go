package recommend

import (
	"math"
	"math/bits"
	"time"
)

// Histogram layout: values are microseconds. Values below 2^subBits are
// counted exactly; above, each power of two is split into 2^subBits linear
// sub-buckets, so a bucket is at most 1/32 of its value wide (its midpoint
// is within 1.6% of any value in it). Values above maxMicros land in the
// last bucket. The layout is fixed so histograms merge by adding arrays.
const (
	subBits    = 5
	subCount   = 1 << subBits
	maxExp     = 31 // 2^31 µs ≈ 36 min: longer requests are clamped
	numBuckets = subCount + (maxExp-subBits)*subCount
	maxMicros  = uint64(1)<<maxExp - 1
)

// bucketOf returns the bucket index of a value in microseconds.
func bucketOf(us uint64) int {
	if us > maxMicros {
		us = maxMicros
	}
	if us < subCount {
		return int(us)
	}
	e := bits.Len64(us) - 1
	sub := int(us>>(uint(e)-subBits)) & (subCount - 1)
	return subCount + (e-subBits)*subCount + sub
}

// bucketBounds returns the inclusive lower and exclusive upper bound of
// bucket i in microseconds.
func bucketBounds(i int) (lo, hi uint64) {
	if i < subCount {
		return uint64(i), uint64(i) + 1
	}
	e := (i-subCount)/subCount + subBits
	sub := uint64((i - subCount) % subCount)
	w := uint64(1) << uint(e-subBits)
	lo = (subCount + sub) * w
	return lo, lo + w
}

// Histogram is a fixed-size log-linear latency histogram. The zero value is
// empty and ready to use; two histograms merge by Add.
type Histogram struct {
	counts [numBuckets]uint32
	total  uint64
}

// Record counts one latency.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d/time.Microsecond))]++
	h.total++
}

// RecordN counts n latencies of d.
func (h *Histogram) RecordN(d time.Duration, n uint32) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d/time.Microsecond))] += n
	h.total += uint64(n)
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total }

// Add merges o into h.
func (h *Histogram) Add(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
}

// Reset empties h.
func (h *Histogram) Reset() { *h = Histogram{} }

// ValueAtRank returns the r-th smallest value (1-based), interpolated
// linearly within its bucket so that estimates carry no systematic bias
// from the bucket width.
func (h *Histogram) ValueAtRank(r uint64) time.Duration {
	if h.total == 0 {
		return 0
	}
	if r < 1 {
		r = 1
	}
	if r > h.total {
		r = h.total
	}
	var cum uint64
	for i, c := range h.counts {
		if cum+uint64(c) >= r {
			lo, hi := bucketBounds(i)
			frac := (float64(r-cum) - 0.5) / float64(c)
			return time.Duration((float64(lo) + frac*float64(hi-lo)) * float64(time.Microsecond))
		}
		cum += uint64(c)
	}
	return time.Duration(maxMicros) * time.Microsecond
}

// Quantile returns the value below which a fraction q of the values lie.
func (h *Histogram) Quantile(q float64) time.Duration {
	return h.ValueAtRank(uint64(math.Ceil(q * float64(h.total))))
}

// CountAbove returns how many values are certainly above d (in buckets
// whose lower bound is at least d).
func (h *Histogram) CountAbove(d time.Duration) uint64 {
	b := bucketOf(uint64(d / time.Microsecond))
	var n uint64
	for i := b + 1; i < numBuckets; i++ {
		n += uint64(h.counts[i])
	}
	return n
}

// QuantileCI is a quantile estimate with a distribution-free confidence
// interval from order statistics: with n samples the number below the true
// q-quantile is Binomial(n, q), so the ranks nq ± z·sqrt(nq(1-q)) bracket it
// with the confidence of z (normal approximation to the binomial, adequate
// once n(1-q) is a few dozen, which MinTailSamples enforces).
type QuantileCI struct {
	Value, Lower, Upper time.Duration
	Samples             uint64
}

// QuantileWithCI estimates quantile q of h with a two-sided interval at z
// standard deviations (1.96 for 95%).
func (h *Histogram) QuantileWithCI(q, z float64) QuantileCI {
	n := float64(h.total)
	sd := math.Sqrt(n * q * (1 - q))
	lo := math.Floor(n*q - z*sd)
	hi := math.Ceil(n*q+z*sd) + 1
	if lo < 1 {
		lo = 1
	}
	return QuantileCI{
		Value:   h.Quantile(q),
		Lower:   h.ValueAtRank(uint64(lo)),
		Upper:   h.ValueAtRank(uint64(hi)),
		Samples: h.total,
	}
}

// Bucket is one non-empty histogram bucket for plotting.
type Bucket struct {
	// LowerMs and UpperMs bound the bucket in milliseconds.
	LowerMs float64 `json:"lower_ms"`
	UpperMs float64 `json:"upper_ms"`
	Count   uint64  `json:"count"`
}

// Buckets returns the histogram coarsened to at most max buckets (adjacent
// buckets merged) so an API response stays small.
func (h *Histogram) Buckets(max int) []Bucket {
	first, last := -1, -1
	for i, c := range h.counts {
		if c > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 || max <= 0 {
		return nil
	}
	span := last - first + 1
	per := (span + max - 1) / max
	out := make([]Bucket, 0, max)
	for i := first; i <= last; i += per {
		end := min(i+per, last+1)
		var c uint64
		for j := i; j < end; j++ {
			c += uint64(h.counts[j])
		}
		lo, _ := bucketBounds(i)
		_, hi := bucketBounds(end - 1)
		out = append(out, Bucket{LowerMs: float64(lo) / 1000, UpperMs: float64(hi) / 1000, Count: c})
	}
	return out
}

// sparseHist is the compact form of a closed time slot: only non-empty
// buckets, so that a ring of slots costs memory in proportion to the spread
// of the latencies rather than to the layout.
type sparseHist struct {
	idx []uint16
	cnt []uint32
}

func (s *sparseHist) fromDense(h *Histogram) {
	s.idx, s.cnt = s.idx[:0], s.cnt[:0]
	for i, c := range h.counts {
		if c > 0 {
			s.idx = append(s.idx, uint16(i))
			s.cnt = append(s.cnt, c)
		}
	}
}

func (s *sparseHist) addTo(h *Histogram) {
	for k, i := range s.idx {
		h.counts[i] += s.cnt[k]
		h.total += uint64(s.cnt[k])
	}
}

func (s *sparseHist) subFrom(h *Histogram) {
	for k, i := range s.idx {
		c := s.cnt[k]
		if h.counts[i] < c {
			c = h.counts[i]
		}
		h.counts[i] -= c
		h.total -= uint64(c)
	}
	s.idx, s.cnt = s.idx[:0], s.cnt[:0]
}

// ShareAbove is the share of recorded values above d, interpolating
// linearly within d's bucket as ValueAtRank does.
func (h *Histogram) ShareAbove(d time.Duration) float64 {
	if h.total == 0 {
		return 0
	}
	us := float64(d) / float64(time.Microsecond)
	b := bucketOf(uint64(max(us, 0)))
	n := float64(h.CountAbove(d))
	if lo, hi := bucketBounds(b); hi > lo {
		n += float64(h.counts[b]) * math.Min(1, math.Max(0, (float64(hi)-us)/float64(hi-lo)))
	}
	return n / float64(h.total)
}
