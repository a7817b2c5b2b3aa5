package topology

import (
	"errors"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// FuzzParseRequest checks that any query string either parses into a
// bounded request or fails as a bad request, never panics.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"", "start=0&end=300", "start=2026-11-27T19:00:00Z&end=2026-11-27T19:05:00Z", "namespace=a,b,,c&level=instance",
		"level=endpoint&end=1e10", "start=NaN", "end=-1", "namespace=" + url.QueryEscape("a|b.*"), "start=1&end=1"} {
		f.Add(s)
	}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, qs string) {
		r := httptest.NewRequest("GET", "/api/meshlens/v1/topology", nil)
		r.URL.RawQuery = qs
		req, err := ParseRequest(r, now)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("%q: error %v is not a bad request", qs, err)
			}
			return
		}
		if w := req.End.Sub(req.Start); w < minWindow || w > MaxWindow {
			t.Fatalf("%q: window %s out of bounds", qs, w)
		}
		if len(req.Namespaces) > 100 {
			t.Fatalf("%q: %d namespaces", qs, len(req.Namespaces))
		}
		switch req.Level {
		case LevelService, LevelInstance, LevelEndpoint:
		default:
			t.Fatalf("%q: level %q", qs, req.Level)
		}
	})
}
