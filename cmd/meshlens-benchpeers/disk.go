package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// diskProbe is the latency of the data disk's fsync with nothing else of
// the run going on: a 16 KiB append and an fsync every 10 ms, as a WAL
// does. A server that acknowledges only durable writes cannot answer
// faster than its fsync, so the stalls seen here (the machine's other
// tenants share the disk) bound what a step's p99 can be, for meshlens and
// for any peer that syncs.
type diskProbe struct {
	When                string
	N                   int
	P50, P99, P999, Max time.Duration
}

func (d diskProbe) String() string {
	return fmt.Sprintf("%s: p50 %s, p99 %s, p99.9 %s, max %s (%d fsyncs)", d.When, fmtDur(d.P50), fmtDur(d.P99), fmtDur(d.P999), fmtDur(d.Max), d.N)
}

// probeFsync measures fsync latency in dir for d.
func probeFsync(dir, when string, d time.Duration) (diskProbe, error) {
	f, err := os.CreateTemp(dir, "fsync-probe")
	if err != nil {
		return diskProbe{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 16<<10)
	var lat []time.Duration
	for end := time.Now().Add(d); time.Now().Before(end); {
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			return diskProbe{}, err
		}
		if err := f.Sync(); err != nil {
			return diskProbe{}, err
		}
		lat = append(lat, time.Since(t0))
		time.Sleep(10 * time.Millisecond)
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return diskProbe{When: when, N: len(lat), P50: q(0.5), P99: q(0.99), P999: q(0.999), Max: lat[len(lat)-1]}, nil
}

// probeDisk records one probe of the disk holding the servers' data.
func (h *harness) probeDisk(when string) {
	p, err := probeFsync(filepath.Clean(h.workDir), when, 15*time.Second)
	if err != nil {
		h.note("fsync probe %s failed: %v", when, err)
		return
	}
	logf("data disk fsync %s", p)
	h.res.DiskProbes = append(h.res.DiskProbes, p)
}
