package main

import (
	"math"
	"testing"
	"time"
)

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[99-i] = time.Duration(i+1) * time.Millisecond // reversed: Percentile must sort
	}
	tests := []struct {
		name string
		xs   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 99, 0},
		{"single", ms(7), 50, 7 * time.Millisecond},
		{"single p99", ms(7), 99, 7 * time.Millisecond},
		{"median odd", ms(3, 1, 2), 50, 2 * time.Millisecond},
		{"median even is lower middle", ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p100 is max", hundred, 100, 100 * time.Millisecond},
		{"p1 of 1..100", hundred, 1, 1 * time.Millisecond},
		{"p0 is min", hundred, 0, 1 * time.Millisecond},
		{"p99 small sample is max", ms(1, 2, 3, 4, 500), 99, 500 * time.Millisecond},
		{"p90 of ten", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]time.Duration(nil), tc.xs...)
			if got := Percentile(tc.xs, tc.p); got != tc.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tc.xs, tc.p, got, tc.want)
			}
			for i := range in {
				if in[i] != tc.xs[i] {
					t.Fatalf("Percentile modified its input")
				}
			}
		})
	}
}

func TestSaturation(t *testing.T) {
	ok := func(off float64) Step { return Step{Offered: off, Accepted: off, P99: 5 * time.Millisecond} }
	tests := []struct {
		name  string
		steps []Step
		want  int
	}{
		{"none", nil, -1},
		{"all sustained: highest", []Step{ok(1000), ok(2000), ok(4000)}, 2},
		{"accepted below 99% fails", []Step{ok(1000), {Offered: 2000, Accepted: 1979, P99: time.Millisecond}}, 0},
		{"accepted exactly 99% passes", []Step{ok(1000), {Offered: 2000, Accepted: 1980, P99: time.Millisecond}}, 1},
		{"p99 at 100ms fails", []Step{ok(1000), {Offered: 2000, Accepted: 2000, P99: 100 * time.Millisecond}}, 0},
		{"p99 just under 100ms passes", []Step{ok(1000), {Offered: 2000, Accepted: 2000, P99: 99 * time.Millisecond}}, 1},
		{"first step fails", []Step{{Offered: 1000, Accepted: 10, P99: time.Second}}, -1},
		{"recovery above a failed step counts", []Step{ok(1000), {Offered: 2000, Accepted: 100, P99: time.Second}, ok(4000)}, 2},
		{"unsorted input", []Step{ok(4000), ok(1000), {Offered: 8000, Accepted: 10}}, 0},
		{"zero offered never sustained", []Step{{Offered: 0, Accepted: 0}}, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Saturation(tc.steps); got != tc.want {
				t.Errorf("Saturation = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name   string
		xs     []float64
		want   Summary
		spread float64
	}{
		{"empty", nil, Summary{}, 0},
		{"one", []float64{5}, Summary{N: 1, Median: 5, Min: 5, Max: 5}, 0},
		{"three", []float64{12, 10, 11}, Summary{N: 3, Median: 11, Min: 10, Max: 12}, 2.0 / 11 * 100},
		{"two: mean of middle", []float64{10, 20}, Summary{N: 2, Median: 15, Min: 10, Max: 20}, 10.0 / 15 * 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Summarize(tc.xs)
			if got != tc.want {
				t.Errorf("Summarize = %+v, want %+v", got, tc.want)
			}
			if s := got.SpreadPct(); s < tc.spread-1e-9 || s > tc.spread+1e-9 {
				t.Errorf("SpreadPct = %v, want %v", s, tc.spread)
			}
		})
	}
}

func TestLadder(t *testing.T) {
	got := Ladder(1000, 8000, 2)
	want := []float64{1000, 2000, 4000, 8000}
	if len(got) != len(want) {
		t.Fatalf("Ladder = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Ladder = %v, want %v", got, want)
		}
	}
	if l := Ladder(1000, 2000, 1.41); len(l) != 3 || l[1] != 1410 || l[2] != 1990 {
		t.Errorf("Ladder(1000,2000,1.41) = %v", l)
	}
	if Ladder(0, 10, 2) != nil || Ladder(10, 1, 2) != nil || Ladder(1, 10, 1) != nil {
		t.Error("invalid ladders must be nil")
	}
}

func TestBucketQuantile(t *testing.T) {
	before := map[float64]float64{0.001: 10, 0.01: 20, 0.1: 20, math.Inf(1): 20}
	cases := []struct {
		name  string
		after map[float64]float64
		q     float64
		want  time.Duration
		n     float64
	}{
		// 100 new: 90 ≤ 1 ms, 9 more ≤ 10 ms, 1 ≤ 100 ms.
		{"p99 in the second bucket", map[float64]float64{0.001: 100, 0.01: 119, 0.1: 120, math.Inf(1): 120}, 0.99, 10 * time.Millisecond, 100},
		{"p50 in the first", map[float64]float64{0.001: 100, 0.01: 119, 0.1: 120, math.Inf(1): 120}, 0.5, time.Millisecond, 100},
		{"tail past the last bound", map[float64]float64{0.001: 10, 0.01: 20, 0.1: 20, math.Inf(1): 30}, 0.99, time.Duration(math.MaxInt64), 10},
		{"nothing observed", before, 0.99, 0, 0},
		{"no histogram", nil, 0.99, 0, 0},
	}
	for _, c := range cases {
		got, n := bucketQuantile(before, c.after, c.q)
		if got != c.want || n != c.n {
			t.Errorf("%s: got %v over %v, want %v over %v", c.name, got, n, c.want, c.n)
		}
	}
}
