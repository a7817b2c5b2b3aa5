package promapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzQueryHandler sends arbitrary PromQL, times and steps through the
// HTTP handlers of /api/v1/query, /query_range, /format_query and /series
// over a small mesh fixture. Whatever the input, the answer is one of the
// statuses Prometheus documents for bad input or limits (never 500, never
// a panic), and the body is a JSON envelope naming the outcome.
func FuzzQueryHandler(f *testing.F) {
	start := fixtureStart()
	db := openTSDB(f, fixture(start))
	a := New(Options{Queryable: db, QueryTimeout: 2 * time.Second, MaxSamples: 200_000,
		Now: func() time.Time { return start.Add(45 * time.Minute) }})
	f.Cleanup(func() { a.Close() })
	mux := http.NewServeMux()
	a.Register(mux)

	end := unixString(start.Add(40 * time.Minute))
	for _, s := range []struct {
		ep                      uint8
		query, start, end, step string
	}{
		{0, `sum by (destination_workload) (rate(istio_requests_total{response_code=~"5.."}[5m]))`, "", end, ""},
		{1, `histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket[1m])))`, unixString(start), end, "15"},
		{1, `up`, "0", "1e10", "0.001"},
		{0, `max_over_time(istio_requests_total[1y:1ms])`, "", end, ""},
		{0, strings.Repeat("(", 10_000) + "1" + strings.Repeat(")", 10_000), "", "", ""},
		{0, `label_replace(up, "x\xff", "$1", "job", "(.*)")`, "", "", ""},
		{2, `sum(rate(x[5m] @ end()))  offset -1h`, "", "", ""},
		{3, `{__name__=~".+"}`, "-9999999999", "9999999999", ""},
		{1, `vector(1)`, "2026-11-27T19:00:00Z", "2026-11-27T18:00:00Z", "-5"},
		{0, `time()`, "NaN", "Inf", "1e400"},
	} {
		f.Add(s.ep, s.query, s.start, s.end, s.step)
	}
	paths := []string{"/api/v1/query", "/api/v1/query_range", "/api/v1/format_query", "/api/v1/series"}
	f.Fuzz(func(t *testing.T, ep uint8, query, startS, endS, step string) {
		form := url.Values{}
		path := paths[int(ep)%len(paths)]
		if path == "/api/v1/series" {
			form.Set("match[]", query)
		} else {
			form.Set("query", query)
		}
		form.Set("time", endS)
		form.Set("start", startS)
		form.Set("end", endS)
		form.Set("step", step)
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusServiceUnavailable:
		default:
			t.Fatalf("%s %q: status %d: %.300s", path, query, rec.Code, rec.Body.String())
		}
		var env struct {
			Status    string `json:"status"`
			ErrorType string `json:"errorType"`
			Error     string `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
			t.Fatalf("%s %q: body is not JSON: %v: %.300s", path, query, err, rec.Body.String())
		}
		if (rec.Code == http.StatusOK) != (env.Status == "success") || (env.Status == "error" && (env.ErrorType == "" || env.Error == "")) {
			t.Fatalf("%s %q: status %d with envelope %+v", path, query, rec.Code, env)
		}
	})
}
