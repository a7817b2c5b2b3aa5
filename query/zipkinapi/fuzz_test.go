package zipkinapi

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/storage/tracestore"
)

func FuzzParseAnnotationQuery(f *testing.F) {
	for _, s := range []string{"error and http.method=GET", "a=b=c", " and and ", "=x", "cache miss"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tags, anns, err := ParseAnnotationQuery(s)
		if err != nil {
			return
		}
		if len(tags)+len(anns) > maxQueryTerms {
			t.Fatalf("%d terms accepted", len(tags)+len(anns))
		}
		for _, a := range anns {
			if strings.Contains(a, "=") || a == "" {
				t.Fatalf("bare term %q", a)
			}
		}
	})
}

func FuzzParseQuery(f *testing.F) {
	f.Add("serviceName=a&spanName=b&annotationQuery=error&minDuration=10&maxDuration=100&endTs=1700000000000&lookback=60000&limit=5")
	f.Add("remoteServiceName=x&limit=100000")
	f.Add("traceIds=a,b")
	now := time.Unix(1700000000, 0)
	lim := tracestore.SearchLimits{MaxRange: 72 * time.Hour, MaxResults: tracestore.MaxLimit, Retention: 72 * time.Hour}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseQuery(v, now)
		if err != nil {
			return
		}
		if q.Limit <= 0 || q.StartMax.Before(q.StartMin) {
			t.Fatalf("accepted %+v", q)
		}
		if c, err := lim.Check(q, now); err == nil && (c.Limit > tracestore.MaxLimit || c.StartMax.Sub(c.StartMin) > lim.MaxRange || c.StartMax.Before(c.StartMin)) {
			t.Fatalf("limits accepted out-of-bounds query %+v", c)
		}
		_, _ = parseTraceIDs(v.Get("traceIds"))
	})
}
