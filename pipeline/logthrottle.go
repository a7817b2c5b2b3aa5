package pipeline

import (
	"sync/atomic"
	"time"
)

// LogThrottle lets one warning through per Interval, so that a client that
// keeps sending bad data cannot flood the log; the self-metrics still count
// every refusal.
type LogThrottle struct {
	Interval   time.Duration
	last       atomic.Int64 // unix nanoseconds of the last warning let through
	suppressed atomic.Int64
}

// Allow reports whether to log now, and how many warnings were suppressed
// since the last one let through.
func (t *LogThrottle) Allow(now time.Time) (bool, int64) {
	last := t.last.Load()
	if now.UnixNano()-last < int64(t.Interval) || !t.last.CompareAndSwap(last, now.UnixNano()) {
		t.suppressed.Add(1)
		return false, 0
	}
	return true, t.suppressed.Swap(0)
}
