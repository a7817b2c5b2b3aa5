package recommend

import (
	"math"
	"testing"
	"time"
)

func TestServedAtCapacity(t *testing.T) {
	s := newSeries(30, true)
	s.cur = 100
	// Newest first: five minutes at a saturated bottleneck, one just below
	// it (arrival-limited, further from the busiest than counting noise
	// allows), one below the knee, then a gap.
	perMin := []uint64{25500, 25450, 25560, 25400, 25530, 24100, 20000}
	for k, c := range perMin {
		sl := &s.ring[(s.cur-int64(k+1))%int64(len(s.ring))]
		sl.idx = s.cur - int64(k+1)
		sl.c.total = c
	}
	n, v := s.servedAtCapacity(time.Minute, 400)
	if n != 5 {
		t.Fatalf("%d slots at capacity, want 5 (the 24,100 and 20,000 minutes are not)", n)
	}
	var mean, ss float64
	for _, c := range perMin[:5] {
		mean += float64(c) / 5
	}
	for _, c := range perMin[:5] {
		ss += (float64(c) - mean) * (float64(c) - mean)
	}
	if want := ss / 4 / 60; math.Abs(v-want) > 1e-9*want {
		t.Fatalf("variance per second %.4f, want %.4f", v, want)
	}
}

func TestRateCeiling(t *testing.T) {
	base := svcSnap{peakPerSec: 425, knee: 368, kneeLatMs: 25, capSlots: 9, capVarSec: 95}
	s := base
	c, m := s.rateCeiling()
	b := math.Ceil(0.2 * 425)
	if want := 95 * math.Log(20) / (2 * b); math.Abs(m-want) > 1e-9 || c != 425+m {
		t.Fatalf("ceiling %.3f margin %.3f, want margin %.3f above 425", c, m, want)
	}
	// Twice the variability needs twice the margin for the same risk.
	s.capVarSec *= 2
	if _, m2 := s.rateCeiling(); math.Abs(m2-2*m) > 1e-9 {
		t.Fatalf("margin %.3f at twice the variance, want %.3f", m2, 2*m)
	}
	for name, mod := range map[string]func(*svcSnap){
		"too few minutes at capacity":       func(s *svcSnap) { s.capSlots = minCapacitySlots - 1 },
		"no latency, so no in-flight limit": func(s *svcSnap) { s.kneeLatMs, s.meanLatMs = 0, 0 },
		"no knee, so no capacity":           func(s *svcSnap) { s.knee = 0 },
	} {
		s := base
		mod(&s)
		if c, m := s.rateCeiling(); m != 0 || c != s.capacity() {
			t.Errorf("%s: ceiling %.2f margin %.2f, want the capacity %.2f", name, c, m, s.capacity())
		}
	}
}
