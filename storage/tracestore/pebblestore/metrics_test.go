package pebblestore

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestWALFsyncMetric: every synced write adds an fsync to the histogram,
// in seconds rather than Pebble's nanoseconds.
func TestWALFsyncMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := Open(Config{Dir: t.TempDir(), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := time.Now().Add(-time.Minute)
	for i := range 3 {
		if err := s.WriteTraces(context.Background(), crashBatch(i, base)); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "meshlens_tracestore_wal_fsync_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() < 3 {
			t.Errorf("%d fsyncs recorded after 3 synced writes", h.GetSampleCount())
		}
		// A mean fsync outside (0, 10 s) means the unit is wrong.
		if mean := h.GetSampleSum() / float64(h.GetSampleCount()); mean <= 0 || mean > 10 {
			t.Errorf("mean fsync %g s", mean)
		}
		var has100us bool
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() > 0.99e-4 && b.GetUpperBound() < 1.01e-4 {
				has100us = true
			}
		}
		if !has100us {
			t.Error("no 100 µs bucket: bucket bounds not converted to seconds")
		}
		return
	}
	t.Fatal("meshlens_tracestore_wal_fsync_seconds not registered")
}
