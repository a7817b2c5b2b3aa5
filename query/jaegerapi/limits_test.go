package jaegerapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/memstore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

var testLimits = tracestore.SearchLimits{
	MaxRange: 24 * time.Hour, MaxResults: 100, Timeout: 50 * time.Millisecond, Retention: 72 * time.Hour,
	RangeKey: "query.traces.max_search_range", ResultsKey: "query.traces.max_results", TimeoutKey: "query.traces.timeout",
}

// TestSearchLimits: every limit answers with its status and a message
// naming the setting, in Jaeger's envelope (v1) or the gateway's error
// object (api_v3); a search within the limits reaches the store.
func TestSearchLimits(t *testing.T) {
	now := time.Now()
	us := func(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }
	rfc := func(t time.Time) string { return url.QueryEscape(t.UTC().Format(time.RFC3339Nano)) }
	for _, tc := range []struct {
		name   string
		path   string
		status int
		msg    string
		stuck  bool
	}{
		{"v1 within limits", "/api/traces?service=a&limit=100&lookback=24h", 200, "", false},
		{"v1 too many results", "/api/traces?service=a&limit=101", 400, "limit 101 exceeds query.traces.max_results (100 traces per search)", false},
		{"v1 lookback over range", "/api/traces?service=a&lookback=25h", 400, "time range 25h0m0s exceeds query.traces.max_search_range (24h0m0s)", false},
		{"v1 start/end over range", "/api/traces?service=a&start=" + us(now.Add(-30*time.Hour)) + "&end=" + us(now), 400, "exceeds query.traces.max_search_range", false},
		// The 48h before the retention hold no spans: clipped, not refused.
		{"v1 older than retention is clipped", "/api/traces?service=a&start=" + us(now.Add(-120*time.Hour)) + "&end=" + us(now.Add(-50*time.Hour)), 200, "", false},
		{"v1 search timeout", "/api/traces?service=a", 503, "query.traces.timeout (50ms)", true},
		{"v1 traceID timeout", "/api/traces?traceID=0af7651916cd43dd8448eb211c80319c", 503, "query.traces.timeout", true},
		{"v1 get trace timeout", "/api/traces/0af7651916cd43dd8448eb211c80319c", 503, "query.traces.timeout", true},
		{"v3 too many results", "/api/v3/traces?query.service_name=a&query.num_traces=5000&query.start_time_min=" + rfc(now.Add(-time.Hour)) + "&query.start_time_max=" + rfc(now), 400, "limit 5000 exceeds query.traces.max_results", false},
		{"v3 range", "/api/v3/traces?query.service_name=a&query.start_time_min=" + rfc(now.Add(-48*time.Hour)) + "&query.start_time_max=" + rfc(now), 400, "exceeds query.traces.max_search_range", false},
		{"v3 search timeout", "/api/v3/traces?query.service_name=a&query.start_time_min=" + rfc(now.Add(-time.Hour)) + "&query.start_time_max=" + rfc(now), 503, "query.traces.timeout", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r tracestore.Reader = memstore.New(memstore.Config{})
			stuck := &tracestoretest.StuckReader{}
			if tc.stuck {
				r = stuck
			}
			mux := http.NewServeMux()
			New(r, nil).WithLimits(testLimits).Register(mux)
			rec := httptest.NewRecorder()
			start := time.Now()
			mux.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.stuck && time.Since(start) > 5*time.Second {
				t.Fatalf("timeout answered after %v", time.Since(start))
			}
			if tc.msg == "" {
				return
			}
			var msg string
			if strings.HasPrefix(tc.path, "/api/v3/") {
				var e v3Error
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.HTTPCode != tc.status {
					t.Fatalf("body %s: %v", rec.Body, err)
				}
				msg = e.Error.Message
			} else {
				var e env
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code != tc.status {
					t.Fatalf("body %s: %v", rec.Body, err)
				}
				msg = e.Errors[0].Msg
			}
			if !strings.Contains(msg, tc.msg) {
				t.Fatalf("message %q does not contain %q", msg, tc.msg)
			}
			if tc.status == 400 && stuck.Calls.Load() != 0 {
				t.Fatal("a refused search reached the store")
			}
		})
	}
}
