package meshreport

import (
	"sync/atomic"
	"time"
)

// logThrottle lets one warning through per interval, so that a probe that
// keeps sending bad data cannot flood the log; the self-metrics still count
// every refusal.
type logThrottle struct {
	interval   time.Duration
	last       atomic.Int64 // unix nanoseconds of the last warning let through
	suppressed atomic.Int64
}

// allow reports whether to log now, and how many warnings were suppressed
// since the last one let through.
func (t *logThrottle) allow(now time.Time) (bool, int64) {
	last := t.last.Load()
	if now.UnixNano()-last < int64(t.interval) || !t.last.CompareAndSwap(last, now.UnixNano()) {
		t.suppressed.Add(1)
		return false, 0
	}
	return true, t.suppressed.Swap(0)
}
