package tracestore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrLimit marks a search refused because it exceeds a configured search
// limit. It wraps ErrBadQuery (HTTP 400): the client can fix the request,
// and a refusal tells it why, where a silent clamp would return a
// truncated answer that looks complete.
var ErrLimit = fmt.Errorf("%w: over a search limit", ErrBadQuery)

// ErrSearchTimeout marks a search that ran past SearchLimits.Timeout; it
// wraps context.DeadlineExceeded (HTTP 503).
var ErrSearchTimeout = fmt.Errorf("trace search timed out: %w", context.DeadlineExceeded)

// SearchLimits bound what one trace search may cost. The query APIs check
// a parsed Query against them before it reaches a backend. Zero fields
// impose no bound (other than MaxLimit, which every backend applies).
type SearchLimits struct {
	// MaxRange is the longest StartMax-StartMin window, measured after
	// the window is clipped to Retention.
	MaxRange time.Duration
	// MaxResults is the largest Limit a search may ask for.
	MaxResults int
	// Timeout bounds the time one search (or trace fetch) may take.
	Timeout time.Duration
	// Retention is how long spans are kept: the part of a window older
	// than now-Retention holds no spans, so it is clipped off silently
	// before MaxRange is checked.
	Retention time.Duration
	// RangeKey, ResultsKey and TimeoutKey name the settings that raise
	// each limit, so that the error says how to change it.
	RangeKey, ResultsKey, TimeoutKey string
}

// Check validates q against the limits. It returns q with its window
// clipped to the retention, or an error wrapping ErrLimit that names the
// limit, the value asked for and the setting that raises it.
func (l SearchLimits) Check(q Query, now time.Time) (Query, error) {
	if l.MaxResults > 0 && q.Limit > l.MaxResults {
		return q, fmt.Errorf("%w: limit %d exceeds %s (%d traces per search); ask for fewer traces or raise it",
			ErrLimit, q.Limit, orKey(l.ResultsKey), l.MaxResults)
	}
	if l.Retention > 0 && !q.StartMin.IsZero() {
		if floor := now.Add(-l.Retention); q.StartMin.Before(floor) {
			q.StartMin = floor
			if !q.StartMax.IsZero() && q.StartMax.Before(q.StartMin) {
				// The whole window is older than any stored span; keep it
				// empty rather than inverted.
				q.StartMax = q.StartMin
			}
		}
	}
	if l.MaxRange > 0 {
		if q.StartMin.IsZero() || q.StartMax.IsZero() {
			return q, fmt.Errorf("%w: an unbounded time range exceeds %s (%v); give a start and an end",
				ErrLimit, orKey(l.RangeKey), l.MaxRange)
		}
		if r := q.StartMax.Sub(q.StartMin); r > l.MaxRange {
			return q, fmt.Errorf("%w: time range %v exceeds %s (%v); narrow the range or raise it",
				ErrLimit, r.Round(time.Second), orKey(l.RangeKey), l.MaxRange)
		}
	}
	return q, nil
}

// Context returns ctx bounded by the search timeout.
func (l SearchLimits) Context(ctx context.Context) (context.Context, context.CancelFunc) {
	if l.Timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, l.Timeout, l.timeoutError())
}

// TimeoutError turns an error caused by the search timeout firing into
// one naming the timeout and its setting; other errors pass unchanged.
// ctx is the context Context returned.
func (l SearchLimits) TimeoutError(ctx context.Context, err error) error {
	if err == nil || l.Timeout <= 0 || !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if cause := context.Cause(ctx); cause != nil && errors.Is(cause, ErrSearchTimeout) {
		return cause
	}
	return err
}

func (l SearchLimits) timeoutError() error {
	return fmt.Errorf("%w: the search ran longer than %s (%v); narrow it (operation, tags, shorter range) or raise the timeout",
		ErrSearchTimeout, orKey(l.TimeoutKey), l.Timeout)
}

func orKey(k string) string {
	if k == "" {
		return "the server's limit"
	}
	return k
}
