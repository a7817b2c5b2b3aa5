package main

import (
	"math"
	"testing"
)

func TestFloorSlope(t *testing.T) {
	// Samples every 5 s (1/12 min) over 5 minutes.
	sawtooth := func(floorRate float64) (xs, ys []float64) {
		for i := 0; i <= 60; i++ {
			x := float64(i) / 12
			// The head fills for one minute, then is compacted.
			ys = append(ys, 100+floorRate*x+40*(x-math.Floor(x)))
			xs = append(xs, x)
		}
		return xs, ys
	}
	cases := []struct {
		name      string
		floorRate float64
		want      float64
	}{
		{"bounded sawtooth", 0, 0},
		{"leak under the sawtooth", 5, 5},
	}
	for _, c := range cases {
		xs, ys := sawtooth(c.floorRate)
		got, n := floorSlope(xs, ys, 1)
		if math.Abs(got-c.want) > 0.5 || n < 4 {
			t.Errorf("%s: floor slope %.2f over %d windows, want %.1f", c.name, got, n, c.want)
		}
		if raw := slope(xs, ys); c.floorRate == 0 && math.Abs(raw) < 1 {
			t.Errorf("%s: plain slope %.2f; the test's sawtooth should skew it", c.name, raw)
		}
	}
	if s, n := floorSlope(nil, nil, 1); s != 0 || n != 0 {
		t.Errorf("no samples: %v over %d", s, n)
	}
}
