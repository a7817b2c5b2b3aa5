package zipkinapi

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/memstore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

// TestSearchLimits: a search over a limit answers 400 and one past the
// timeout 503, each with a plain-text message naming the setting.
func TestSearchLimits(t *testing.T) {
	lim := tracestore.SearchLimits{
		MaxRange: 24 * time.Hour, MaxResults: 100, Timeout: 50 * time.Millisecond, Retention: 72 * time.Hour,
		RangeKey: "query.traces.max_search_range", ResultsKey: "query.traces.max_results", TimeoutKey: "query.traces.timeout",
	}
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	for _, tc := range []struct {
		name   string
		path   string
		status int
		msg    string
		stuck  bool
	}{
		{"within limits", "/api/v2/traces?serviceName=a&limit=100&lookback=" + ms(24*time.Hour), 200, "", false},
		{"too many results", "/api/v2/traces?limit=101", 400, "limit 101 exceeds query.traces.max_results (100 traces per search)", false},
		{"range too long", "/api/v2/traces?lookback=" + ms(48*time.Hour), 400, "time range 48h0m0s exceeds query.traces.max_search_range (24h0m0s)", false},
		{"epoch-long lookback is clipped to the retention, then refused", "/api/v2/traces?lookback=" + ms(100000*time.Hour), 400, "time range 72h0m0s exceeds", false},
		{"search timeout", "/api/v2/traces?serviceName=a", 503, "query.traces.timeout (50ms)", true},
		{"trace timeout", "/api/v2/trace/0af7651916cd43dd8448eb211c80319c", 503, "query.traces.timeout", true},
		{"traceMany timeout", "/api/v2/traceMany?traceIds=0af7651916cd43dd8448eb211c80319c,1", 503, "query.traces.timeout", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r tracestore.Reader = memstore.New(memstore.Config{})
			stuck := &tracestoretest.StuckReader{}
			if tc.stuck {
				r = stuck
			}
			mux := http.NewServeMux()
			New(r, nil, nil).WithLimits(lim).Register(mux)
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if !strings.Contains(rec.Body.String(), tc.msg) {
				t.Fatalf("body %q does not contain %q", rec.Body, tc.msg)
			}
			if tc.status == 400 && stuck.Calls.Load() != 0 {
				t.Fatal("a refused search reached the store")
			}
		})
	}
}
