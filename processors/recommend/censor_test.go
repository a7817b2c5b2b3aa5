package recommend

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/model"
)

// TestCensoredTimeout plays an edge whose published timeout is applied:
// from the first publication on, every request slower than the timeout in
// force (successes and hanging failures alike) reaches the engine as a UT
// timeout at the timeout, its latency unseen. On stationary traffic the
// timeout must stay where it was (the cut requests must not vanish from the
// ranks, which would drift it down); when latency doubles, the cut rate must
// raise it within a few minutes, and it must not come down while the slow
// latencies last.
func TestCensoredTimeout(t *testing.T) {
	tests := []struct {
		name   string
		seed   uint64
		sigma  float64
		riseAt int // step from which latency doubles; 0: never
	}{
		{"stationary", 41, 0.3, 0},
		// Wide: without counting the cut requests, p99.9 re-estimated from
		// the successes alone is about p99.8, 12% lower.
		{"stationary, wide", 43, 0.6, 0},
		{"latency doubles", 47, 0.3, 90},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(tc.seed, 7))
			now := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
			e, _ := New(Config{Now: func() time.Time { return now }}, nil, nil)
			id := "timeout:src.default->b.default"
			base := lognormal(rng, 40, tc.sigma)
			const perStep = 3000 // 100 req/s, recomputed every 30 s
			var inForce, first float64
			var firstStep, raisedStep = -1, -1
			lat := make([]time.Duration, perStep)
			code := make([]int, perStep)
			flags := make([]string, perStep)
			for step := 0; step < 180; step++ {
				now = now.Add(30 * time.Second)
				T := time.Duration(inForce * float64(time.Millisecond))
				for i := range lat {
					code[i], flags[i] = 200, ""
					if rng.Float64() < 0.005 { // hanging failures, 5x the target
						lat[i], code[i] = 20*time.Second, 504
					} else {
						lat[i] = base(i)
						if tc.riseAt > 0 && step >= tc.riseAt {
							lat[i] *= 2
						}
					}
					if T > 0 && lat[i] > T {
						lat[i], code[i], flags[i] = T, 504, "UT"
					}
				}
				feed(t, e, "src", "b", now, perStep, 30*time.Second, model.DetectClient,
					func(i int) time.Duration { return lat[i] }, func(i int) (int, string) { return code[i], flags[i] })
				e.Recompute(now)
				r := find(e.Recommendations(Filter{Kind: KindTimeout}), id)
				if r == nil {
					if firstStep >= 0 {
						t.Fatalf("step %d: timeout withdrawn", step)
					}
					continue
				}
				v := r.Recommended.TimeoutMs
				if firstStep < 0 {
					firstStep, first = step, v
				}
				switch {
				case tc.riseAt == 0 || step < tc.riseAt:
					// Stationary (with the timeout applied for up to an hour):
					// within a few percent of the first, uncensored, value.
					if v < 0.95*first || v > 1.05*first {
						t.Fatalf("step %d: stationary timeout moved from %.0f to %.0f ms", step, first, v)
					}
				case raisedStep < 0 && v >= 1.8*first:
					raisedStep = step
				case raisedStep >= 0 && v < 1.8*first:
					t.Fatalf("step %d: timeout lowered to %.0f ms while latency stays doubled", step, v)
				}
				inForce = v
			}
			if firstStep < 0 || firstStep > 40 {
				t.Fatalf("timeout first published at step %d", firstStep)
			}
			changes := 0
			for _, c := range e.History(Filter{Kind: KindTimeout}, 0) {
				if c.ID == id && !strings.HasPrefix(c.Reason, "first") {
					changes++
				}
			}
			if tc.riseAt == 0 {
				if changes > 1 {
					t.Fatalf("%d timeout changes on stationary traffic with the timeout applied", changes)
				}
				t.Logf("timeout %.0f ms from step %d, %.0f ms after %d censored recomputations, %d changes", first, firstStep, inForce, 180-firstStep, changes)
				return
			}
			// A few minutes: the raise needs recent data cut at the timeout in force.
			if raisedStep < 0 || raisedStep > tc.riseAt+6 {
				t.Fatalf("timeout %.0f ms not raised to 1.8x within 3 minutes of latency doubling (raised at step %d, rise at %d)", first, raisedStep, tc.riseAt)
			}
			t.Logf("timeout %.0f ms, raised at step %d (rise at %d), %.0f ms at the end, %d changes", first, raisedStep, tc.riseAt, inForce, changes)
		})
	}
}
