package eval

import (
	"testing"
	"time"

	"github.com/meshlens/meshlens/processors/recommend"
)

// TestFeederEndOrder: the engine must see a call only once it has ended,
// and calls in the order they end, whatever order they were generated in.
// A call still running at a recomputation is held back for a later one.
func TestFeederEndOrder(t *testing.T) {
	t0 := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	e, err := recommend.New(recommend.Config{Now: func() time.Time { return t0.Add(time.Hour) }}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newFeeder(e, []EdgeModel{{Name: "svc-000"}})
	// Generated in start order: a request hanging for 50 s, then fast ones.
	f.add(0, request{at: t0, dur: 50 * time.Second, fail: true}, false)
	for i := 1; i <= 3; i++ {
		f.add(0, request{at: t0.Add(time.Duration(i) * time.Second), dur: 10 * time.Millisecond}, false)
	}
	f.add(0, request{at: t0.Add(20 * time.Second), dur: 15 * time.Second}, false)
	if err := f.feedUntil(t0.Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if len(f.pend) != 2 || f.pend[0].r.dur != 15*time.Second || f.pend[1].r.dur != 50*time.Second {
		t.Fatalf("held back after 30 s: %+v; want the calls ending at 35 s and 50 s, in that order", f.pend)
	}
	if err := f.feedUntil(t0.Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if len(f.pend) != 0 {
		t.Fatalf("%d calls held back after all have ended", len(f.pend))
	}
}
