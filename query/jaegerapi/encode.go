package jaegerapi

import (
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"

	"github.com/meshlens/meshlens/query/jsonquote"
)

// The trace answers (/api/traces, /api/traces/{id}) are encoded by hand:
// a search answers with up to 20 whole traces, thousands of spans, and
// encoding/json's reflection over them was 28% of a search's CPU at 10M
// stored spans (docs/tracestore.md). The bytes are exactly what
// encoding/json's Encoder writes for the same envelope, trailing newline
// included: TestEncodeMatchesEncodingJSON and FuzzEncodeTraces compare
// the two.

// writeTraces answers with the envelope of traces and errs, written out
// in pieces of about flushBytes: a search's answer can be megabytes, and
// building it whole was half of what a search allocated.
func writeTraces(w http.ResponseWriter, traces []uiTrace, errs []respError) {
	if !encodable(traces) {
		// A value encoding/json refuses or one this encoder does not
		// know: let encoding/json answer, as it did before. (Lazy spans
		// hold neither, but encoding/json needs them decoded.)
		for i := range traces {
			traces[i].materialize()
		}
		writeJSON(w, http.StatusOK, envelope{Data: traces, Total: len(traces), Errors: errs})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	var werr error
	flush := func(b []byte) []byte {
		if len(b) < flushBytes || werr != nil {
			return b
		}
		_, werr = w.Write(b)
		return b[:0]
	}
	b, _ := appendEnvelope(make([]byte, 0, 2*flushBytes), traces, errs, flush)
	if werr == nil {
		_, _ = w.Write(b)
	}
}

// flushBytes is the size of the pieces writeTraces writes.
const flushBytes = 32 << 10

// encodable reports whether every tag value is one appendKV writes itself
// (it cannot fail then): a string, a bool, an int64 or a finite float64.
func encodable(traces []uiTrace) bool {
	ok := func(kvs []uiKeyValue) bool {
		for _, kv := range kvs {
			switch v := kv.Value.(type) {
			case string, bool, int64:
			case float64:
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return false
				}
			default:
				return false
			}
		}
		return true
	}
	for _, t := range traces {
		for _, p := range t.Processes {
			if !ok(p.Tags) {
				return false
			}
		}
		for _, s := range t.Spans {
			if !ok(s.Tags) {
				return false
			}
			for _, l := range s.Logs {
				if !ok(l.Fields) {
					return false
				}
			}
		}
	}
	return true
}

// appendEnvelope appends envelope{Data: traces, Total: len(traces),
// Errors: errs} as encoding/json's Encoder writes it, passing b to flush
// (when not nil) after every span; flush returns the buffer to go on with.
func appendEnvelope(b []byte, traces []uiTrace, errs []respError, flush func([]byte) []byte) ([]byte, error) {
	b = append(b, `{"data":`...)
	if traces == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range traces {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendTrace(b, &traces[i], flush); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	b = append(b, `,"total":`...)
	b = strconv.AppendInt(b, int64(len(traces)), 10)
	b = append(b, `,"limit":0,"offset":0,"errors":`...)
	e, err := json.Marshal(errs)
	if err != nil {
		return nil, err
	}
	b = append(b, e...)
	return append(b, "}\n"...), nil
}

func appendTrace(b []byte, t *uiTrace, flush func([]byte) []byte) ([]byte, error) {
	b = append(b, `{"traceID":`...)
	b = appendString(b, t.TraceID)
	b = append(b, `,"spans":`...)
	var err error
	span := func(b []byte, s *uiSpan) ([]byte, error) {
		b, err := appendSpan(b, s)
		if err == nil && flush != nil {
			b = flush(b)
		}
		return b, err
	}
	if t.lazy != nil {
		// Each span is decoded into the one uiSpan just before it is
		// written (lazySpans).
		var s uiSpan
		b, err = appendArray(b, len(t.lazy.spans), func(b []byte, i int) ([]byte, error) {
			t.lazy.fill(i, &s)
			return span(b, &s)
		})
	} else {
		b, err = appendSlice(b, t.Spans, span)
	}
	if err != nil {
		return nil, err
	}
	b = append(b, `,"processes":`...)
	if t.Processes == nil {
		b = append(b, "null"...)
	} else {
		keys := make([]string, 0, len(t.Processes))
		for k := range t.Processes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, `:{"serviceName":`...)
			p := t.Processes[k]
			b = appendString(b, p.ServiceName)
			b = append(b, `,"tags":`...)
			if b, err = appendSlice(b, p.Tags, appendKV); err != nil {
				return nil, err
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	b = append(b, `,"warnings":`...)
	b = appendStrings(b, t.Warnings)
	return append(b, '}'), nil
}

func appendSpan(b []byte, s *uiSpan) ([]byte, error) {
	b = append(b, `{"traceID":`...)
	b = appendString(b, s.TraceID)
	b = append(b, `,"spanID":`...)
	b = appendString(b, s.SpanID)
	if s.Flags != 0 {
		b = append(b, `,"flags":`...)
		b = strconv.AppendUint(b, uint64(s.Flags), 10)
	}
	b = append(b, `,"operationName":`...)
	b = appendString(b, s.OperationName)
	b = append(b, `,"references":`...)
	b, _ = appendSlice(b, s.References, func(b []byte, r *uiReference) ([]byte, error) {
		b = append(b, `{"refType":`...)
		b = appendString(b, r.RefType)
		b = append(b, `,"traceID":`...)
		b = appendString(b, r.TraceID)
		b = append(b, `,"spanID":`...)
		b = appendString(b, r.SpanID)
		return append(b, '}'), nil
	})
	b = append(b, `,"startTime":`...)
	b = strconv.AppendUint(b, s.StartTime, 10)
	b = append(b, `,"duration":`...)
	b = strconv.AppendUint(b, s.Duration, 10)
	b = append(b, `,"tags":`...)
	var err error
	if b, err = appendSlice(b, s.Tags, appendKV); err != nil {
		return nil, err
	}
	b = append(b, `,"logs":`...)
	if b, err = appendSlice(b, s.Logs, func(b []byte, l *uiLog) ([]byte, error) {
		b = append(b, `{"timestamp":`...)
		b = strconv.AppendUint(b, l.Timestamp, 10)
		b = append(b, `,"fields":`...)
		b, err := appendSlice(b, l.Fields, appendKV)
		return append(b, '}'), err
	}); err != nil {
		return nil, err
	}
	b = append(b, `,"processID":`...)
	b = appendString(b, s.ProcessID)
	b = append(b, `,"warnings":`...)
	b = appendStrings(b, s.Warnings)
	return append(b, '}'), nil
}

func appendKV(b []byte, kv *uiKeyValue) ([]byte, error) {
	b = append(b, `{"key":`...)
	b = appendString(b, kv.Key)
	b = append(b, `,"type":`...)
	b = appendString(b, kv.Type)
	b = append(b, `,"value":`...)
	switch v := kv.Value.(type) {
	case string:
		b = appendString(b, v)
	case bool:
		b = strconv.AppendBool(b, v)
	case int64:
		b = strconv.AppendInt(b, v, 10)
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			_, err := json.Marshal(v) // encoding/json's UnsupportedValueError
			return nil, err
		}
		b = appendFloat(b, v)
	default:
		e, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		b = append(b, e...)
	}
	return append(b, '}'), nil
}

// appendSlice appends s as a JSON array (null when nil, as encoding/json).
func appendSlice[T any](b []byte, s []T, elem func([]byte, *T) ([]byte, error)) ([]byte, error) {
	if s == nil {
		return append(b, "null"...), nil
	}
	return appendArray(b, len(s), func(b []byte, i int) ([]byte, error) { return elem(b, &s[i]) })
}

// appendArray appends a JSON array of n elements, element i written by
// elem.
func appendArray(b []byte, n int, elem func(b []byte, i int) ([]byte, error)) ([]byte, error) {
	b = append(b, '[')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = elem(b, i); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

func appendStrings(b []byte, s []string) []byte {
	b, _ = appendSlice(b, s, func(b []byte, v *string) ([]byte, error) { return appendString(b, *v), nil })
	return b
}

// appendFloat formats f as encoding/json's float64 encoder: shortest
// representation, exponent form below 1e-6 and from 1e21, and a
// two-digit negative exponent shortened ("1e-07" -> "1e-7").
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendString quotes s as encoding/json's Encoder does.
func appendString(b []byte, s string) []byte { return jsonquote.Append(b, s, jsonquote.EncodingJSON) }
