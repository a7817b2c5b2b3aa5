// Package utf8guard replaces invalid UTF-8 in decoded spans with U+FFFD.
//
// The OTLP and Jaeger decoders keep string bytes as they came. A span
// carrying invalid UTF-8 would be stored as is and served to clients that
// require valid UTF-8: protobuf-go rejects such proto3 strings when it
// unmarshals, so a client reading through the Jaeger remote-storage API
// could fail on the whole trace. Zipkin JSON already decodes with U+FFFD
// (encoding/json), so all span receivers end up with the same rule.
package utf8guard

import (
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Traces fixes every string of td in place (names, attribute keys and
// values at any depth, events, links, status messages, trace state) and
// returns how many strings it changed. A valid batch costs one UTF-8 scan
// of its strings and no allocation.
func Traces(td ptrace.Traces) int {
	n := 0
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		n += attrs(rs.Resource().Attributes())
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j)
			sc := ss.Scope()
			n += str(sc.Name, sc.SetName) + str(sc.Version, sc.SetVersion) + attrs(sc.Attributes())
			spans := ss.Spans()
			for k := 0; k < spans.Len(); k++ {
				n += span(spans.At(k))
			}
		}
	}
	return n
}

func span(s ptrace.Span) int {
	n := str(s.Name, s.SetName) + attrs(s.Attributes())
	st := s.Status()
	n += str(st.Message, st.SetMessage)
	ts := s.TraceState()
	n += str(ts.AsRaw, ts.FromRaw)
	evs := s.Events()
	for i := 0; i < evs.Len(); i++ {
		e := evs.At(i)
		n += str(e.Name, e.SetName) + attrs(e.Attributes())
	}
	links := s.Links()
	for i := 0; i < links.Len(); i++ {
		l := links.At(i)
		lts := l.TraceState()
		n += attrs(l.Attributes()) + str(lts.AsRaw, lts.FromRaw)
	}
	return n
}

func str(get func() string, set func(string)) int {
	if s := get(); !utf8.ValidString(s) {
		set(strings.ToValidUTF8(s, "\uFFFD"))
		return 1
	}
	return 0
}

func attrs(m pcommon.Map) int {
	n := 0
	var badKeys []string
	m.Range(func(k string, v pcommon.Value) bool {
		if !utf8.ValidString(k) {
			badKeys = append(badKeys, k)
		}
		n += value(v)
		return true
	})
	for _, k := range badKeys {
		v, _ := m.Get(k)
		tmp := pcommon.NewValueEmpty()
		v.CopyTo(tmp)
		m.Remove(k)
		tmp.CopyTo(m.PutEmpty(strings.ToValidUTF8(k, "\uFFFD")))
		n++
	}
	return n
}

func value(v pcommon.Value) int {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return str(v.Str, v.SetStr)
	case pcommon.ValueTypeMap:
		return attrs(v.Map())
	case pcommon.ValueTypeSlice:
		n := 0
		sl := v.Slice()
		for i := 0; i < sl.Len(); i++ {
			n += value(sl.At(i))
		}
		return n
	}
	return 0
}
