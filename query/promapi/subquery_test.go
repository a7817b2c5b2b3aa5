package promapi

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
)

func TestCheckSubquerySteps(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	for _, tc := range []struct {
		query   string
		span    time.Duration
		wantErr string
	}{
		{"max_over_time(up[1h:1m])", 0, ""},
		{"max_over_time(up[1d:100ms])", 0, ""}, // 864,001 steps
		{"max_over_time(up[1y:1ms])", 0, "subquery [1y:1ms] would evaluate 31536000001 steps, more than the limit of 1000000"},
		{"max_over_time(up[1y:])", 0, ""}, // default step 1m: 525,601 steps
		{"max_over_time(up[2y:])", 0, "subquery [2y:1m] would evaluate 1051201 steps"},
		// A range query widens the window each subquery covers.
		{"max_over_time(up[1h:10ms])", 0, ""},
		{"max_over_time(up[1h:10ms])", 3 * time.Hour, "subquery [1h:10ms] would evaluate 1440001 steps"},
		// A nested subquery covers its parent's window too.
		{"max_over_time(max_over_time(up[1m:1s])[1w:1m])", 0, ""},
		{"max_over_time(max_over_time(up[1m:10ms])[1w:1m])", 0, "subquery [1m:10ms] would evaluate 60486001 steps"},
		{"sum(rate(up[5m]))", 24 * time.Hour, ""},
		{"not promql (", 0, ""}, // the engine reports parse errors
	} {
		err := checkSubquerySteps(p, tc.query, tc.span)
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s over %v: got %v, want %q", tc.query, tc.span, err, tc.wantErr)
		}
	}
}

// TestHugeSubqueryRefused is the crash FuzzQueryHandler found: before the
// check, this one request made the engine allocate 500 GB and the process
// died with "fatal error: runtime: out of memory".
func TestHugeSubqueryRefused(t *testing.T) {
	db := openTSDB(t, fixture(fixtureStart()))
	_, srv := newTestServer(t, Options{Queryable: db})
	for _, path := range []string{"/api/v1/query", "/api/v1/query_range"} {
		resp, err := http.PostForm(srv.URL+path, url.Values{"query": {"max_over_time(istio_requests_total[1y:1ms])"},
			"start": {unixString(fixtureStart())}, "end": {unixString(fixtureStart().Add(time.Hour))}, "step": {"60"}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(body), `"errorType":"bad_data"`) || !strings.Contains(string(body), "more than the limit of 1000000") {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
}
