package recommend

import (
	"math"
	"testing"
	"time"
)

func TestShareAbove(t *testing.T) {
	var h Histogram
	// 1,000 values spread evenly over 1.000–1.999 ms.
	for i := 0; i < 1000; i++ {
		h.Record(time.Millisecond + time.Duration(i)*time.Microsecond)
	}
	for _, tc := range []struct {
		at   time.Duration
		want float64
	}{
		{0, 1},
		{time.Millisecond, 1},
		{1500 * time.Microsecond, 0.5},
		{1900 * time.Microsecond, 0.1},
		{2 * time.Millisecond, 0},
	} {
		if got := h.ShareAbove(tc.at); math.Abs(got-tc.want) > 0.02 {
			t.Errorf("ShareAbove(%v) = %.3f, want %.3f", tc.at, got, tc.want)
		}
	}
}

func TestWholeMsTimeout(t *testing.T) {
	e, err := New(Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	for _, tc := range []struct {
		name         string
		q            float64 // the quantile, ms
		cutLo, cutHi float64
		want         float64
	}{
		// Truncating 3.4 to 3 would cut 2.5× the target; 4 cuts 0.6×.
		{"up when the floor cuts too much", 3.4, 0.0025, 0.0006, 4},
		// 3.1 → 3 cuts 1.2× the target, 4 cuts 0.2×.
		{"down when the floor is nearer", 3.1, 0.0012, 0.0002, 3},
		{"never below 1 ms", 0.4, 0.5, 0.0001, 1},
		{"an exact millisecond stays", 7, 0.001, 0.001, 7},
		{"from 100 ms three significant digits", 123.45, 0, 0, 124},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es := &edgeSnap{tq: QuantileCI{Value: ms(tc.q)}, cutLo: tc.cutLo, cutHi: tc.cutHi,
				msLo: math.Max(1, math.Floor(tc.q)), msHi: math.Max(1, math.Ceil(tc.q))}
			if got := e.wholeMsTimeout(es); got != tc.want {
				t.Fatalf("timeout %v ms, want %v", got, tc.want)
			}
		})
	}
}
