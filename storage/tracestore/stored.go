package tracestore

import (
	"fmt"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// StoredTrace is a trace as a store that keeps OTLP protobuf holds it:
// the chunks its spans were written in, each a TracesData message, oldest
// first. A query API can decode them straight into its own answer instead
// of building pdata first; Trace is the reference decoding any such
// reader must match. The chunks are the reader's: a store copies them
// into memory the reader gave it (or its own), and writes them no more.
type StoredTrace struct {
	ID     pcommon.TraceID
	Chunks [][]byte
	// MaxSpans caps the spans a reader returns (after duplicates are
	// dropped); a trace cut short carries TruncatedWarning.
	MaxSpans int
}

// TruncatedWarning is the warning of a trace of total spans of which only
// the first kept are returned.
func TruncatedWarning(total, kept int) string {
	return fmt.Sprintf("trace has %d spans; only the first %d are returned", total, kept)
}

// Trace decodes the chunks with pdata. A span written again (same
// SpanKey) replaces the earlier copy and keeps its first position. A chunk
// that does not decode is passed to corrupt (when not nil) and skipped.
// A trace without spans is ErrTraceNotFound.
func (st *StoredTrace) Trace(corrupt func(chunk int, err error)) (*Trace, error) {
	type spanRef struct {
		rs   ptrace.ResourceSpans
		ss   ptrace.ScopeSpans
		span ptrace.Span
	}
	var (
		um     ptrace.ProtoUnmarshaler
		latest map[SpanKey]int
		spans  []spanRef
	)
	for ci, chunk := range st.Chunks {
		td, err := um.UnmarshalTraces(chunk)
		if err != nil {
			if corrupt != nil {
				corrupt(ci, fmt.Errorf("chunk: %w", err))
			}
			continue
		}
		if latest == nil {
			// Most traces are one chunk: size for it rather than
			// regrow span by span.
			latest = make(map[SpanKey]int, td.SpanCount())
			spans = make([]spanRef, 0, td.SpanCount())
		}
		EachSpan(td, func(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, sp ptrace.Span) {
			r := spanRef{rs, ss, sp}
			key := KeyOf(sp)
			if at, ok := latest[key]; ok {
				spans[at] = r
				return
			}
			latest[key] = len(spans)
			spans = append(spans, r)
		})
	}
	if len(spans) == 0 {
		return nil, ErrTraceNotFound
	}
	out := &Trace{ID: st.ID}
	n := len(spans)
	if st.MaxSpans > 0 {
		n = min(n, st.MaxSpans)
	}
	a := NewAssembler()
	for _, r := range spans[:n] {
		// The chunks were decoded for this call alone.
		a.MoveSpan(r.rs.Resource(), r.ss.Scope(), r.span)
	}
	if len(spans) > n {
		out.Warnings = append(out.Warnings, TruncatedWarning(len(spans), n))
	}
	out.Spans = a.Traces()
	return out, nil
}

// EachSpan calls fn for every span of td with its resource and scope.
func EachSpan(td ptrace.Traces, fn func(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, sp ptrace.Span)) {
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j)
			for k := 0; k < ss.Spans().Len(); k++ {
				fn(rs, ss, ss.Spans().At(k))
			}
		}
	}
}
