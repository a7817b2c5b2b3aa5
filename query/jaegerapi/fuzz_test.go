package jaegerapi

import (
	"net/url"
	"testing"
	"time"

	"github.com/meshlens/meshlens/storage/tracestore"
)

func FuzzParseTraceQuery(f *testing.F) {
	for _, s := range []string{
		"service=a&tags=%7B%22http.method%22%3A%22GET%22%7D&minDuration=1.2s&maxDuration=2s&limit=20",
		"service=a&tag=error:true&tag=http.status_code:500&start=1700000000000000&end=1700000100000000",
		"traceID=abc&traceID=0af7651916cd43dd8448eb211c80319c",
		"service=a&lookback=1h&minDuration=100%C2%B5s",
		"service=a&tags=%7B%22a%22%3A1%2C%22b%22%3Atrue%7D",
	} {
		f.Add(s)
	}
	now := time.Unix(1700000000, 0)
	lim := tracestore.SearchLimits{MaxRange: 72 * time.Hour, MaxResults: tracestore.MaxLimit, Retention: 72 * time.Hour}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := parseTraceQuery(v, now)
		if err != nil {
			return
		}
		if p.query.StartMax.Before(p.query.StartMin) || len(p.query.Tags) > maxTags {
			t.Fatalf("accepted out-of-bounds query %+v", p.query)
		}
		if q, err := lim.Check(p.query, now); err == nil && (q.Limit > tracestore.MaxLimit || q.StartMax.Sub(q.StartMin) > lim.MaxRange || q.StartMax.Before(q.StartMin)) {
			t.Fatalf("limits accepted out-of-bounds query %+v", q)
		}
		if _, err := p.query.Normalize(now, 0); err != nil && p.query.DurationMax >= p.query.DurationMin {
			t.Logf("normalize: %v", err)
		}
	})
}

func FuzzParseTags(f *testing.F) {
	f.Add(`{"k":"v"}`, "a:b")
	f.Add(`{"n":1.5e3,"b":false}`, "a:b:c")
	f.Add(`[1]`, ":")
	f.Fuzz(func(t *testing.T, js, pair string) {
		_, _ = parseTags([]string{js}, []string{pair})
	})
}

func FuzzParseTraceID(f *testing.F) {
	f.Add("0af7651916cd43dd8448eb211c80319c")
	f.Add("00f067aa0ba902b7")
	f.Add("f")
	f.Add("xyz")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := tracestore.ParseTraceID(s)
		if err != nil {
			return
		}
		back, err := tracestore.ParseTraceID(tracestore.TraceIDString(id))
		if err != nil || back != id {
			t.Fatalf("%q -> %s -> %v %v", s, id, back, err)
		}
	})
}

func FuzzParseV3Query(f *testing.F) {
	f.Add("query.service_name=a&query.start_time_min=2024-01-01T00:00:00Z&query.start_time_max=2024-01-02T00:00:00Z&query.duration_min=1ms&query.attributes=%7B%22k%22%3A%22v%22%7D")
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseV3Query(v)
		if err != nil {
			return
		}
		lim := tracestore.SearchLimits{MaxRange: 72 * time.Hour, MaxResults: tracestore.MaxLimit}
		if q, err := lim.Check(q, q.StartMax); err == nil && (q.Limit > tracestore.MaxLimit || q.StartMax.Sub(q.StartMin) > lim.MaxRange) {
			t.Fatalf("limits accepted out-of-bounds query %+v", q)
		}
	})
}
