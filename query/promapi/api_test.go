package promapi

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
)

// envelope is the Prometheus API answer.
type envelope struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
	Infos     []string        `json:"infos"`
}

type queryResult struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

type vectorSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

type matrixSeries struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
}

// call sends a GET (form == nil) or POST request and decodes the envelope.
func call(t *testing.T, method, base, path string, form url.Values) (int, envelope, http.Header) {
	t.Helper()
	var (
		resp *http.Response
		err  error
	)
	if method == http.MethodGet {
		u := base + path
		if len(form) > 0 {
			u += "?" + form.Encode()
		}
		resp, err = http.Get(u)
	} else {
		resp, err = http.PostForm(base+path, form)
	}
	mustf(t, err, "%s %s", method, path)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	mustf(t, err, "read body")
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("%s %s: decode %q: %v", method, path, body, err)
	}
	return resp.StatusCode, env, resp.Header
}

func setup(t *testing.T, mod func(*Options)) (time.Time, string) {
	t.Helper()
	t0 := fixtureStart()
	db := openTSDB(t, fixture(t0))
	opts := Options{Queryable: db, BuildInfo: BuildInfo{Version: "1.2.3", Revision: "abc"}}
	if mod != nil {
		mod(&opts)
	}
	_, srv := newTestServer(t, opts)
	return t0, srv.URL
}

func TestQueryInstantAndRange(t *testing.T) {
	t0, base := setup(t, nil)
	at := t0.Add(20*time.Minute + 7*time.Second)

	code, env, _ := call(t, http.MethodGet, base, "/api/v1/query", url.Values{
		"query": {`sum by (destination_service_name) (rate(istio_requests_total{reporter="destination"}[5m]))`},
		"time":  {unixString(at)},
	})
	if code != 200 || env.Status != "success" {
		t.Fatalf("query: %d %+v", code, env)
	}
	var qr queryResult
	mustf(t, json.Unmarshal(env.Data, &qr), "data")
	if qr.ResultType != "vector" {
		t.Fatalf("resultType %q", qr.ResultType)
	}
	var vec []vectorSample
	mustf(t, json.Unmarshal(qr.Result, &vec), "result")
	if len(vec) != 4 {
		t.Fatalf("want 4 services, got %d: %s", len(vec), qr.Result)
	}
	for _, s := range vec {
		if len(s.Metric) != 1 || s.Metric["destination_service_name"] == "" {
			t.Errorf("metric %v", s.Metric)
		}
		ts, ok := s.Value[0].(float64)
		if !ok || ts != float64(at.UnixMilli())/1000 {
			t.Errorf("timestamp %v, want %v", s.Value[0], float64(at.UnixMilli())/1000)
		}
		if v, ok := s.Value[1].(string); !ok || v == "" || v == "0" {
			t.Errorf("value %v", s.Value[1])
		}
	}

	// Range query, step as a duration and as seconds gives the same answer,
	// GET and POST too.
	form := url.Values{
		"query": {`sum(rate(istio_requests_total[1m]))`},
		"start": {at.Add(-10 * time.Minute).Format(time.RFC3339)},
		"end":   {unixString(at)},
		"step":  {"1m"},
	}
	_, envGet, _ := call(t, http.MethodGet, base, "/api/v1/query_range", form)
	form.Set("step", "60")
	code, envPost, _ := call(t, http.MethodPost, base, "/api/v1/query_range", form)
	if code != 200 || envPost.Status != "success" {
		t.Fatalf("query_range: %d %+v", code, envPost)
	}
	if !bytes.Equal(envGet.Data, envPost.Data) {
		t.Fatalf("GET and POST differ:\n%s\n%s", envGet.Data, envPost.Data)
	}
	mustf(t, json.Unmarshal(envPost.Data, &qr), "data")
	var mat []matrixSeries
	mustf(t, json.Unmarshal(qr.Result, &mat), "result")
	if qr.ResultType != "matrix" || len(mat) != 1 || len(mat[0].Values) != 11 {
		t.Fatalf("want 1 series of 11 points, got %s %s", qr.ResultType, qr.Result)
	}
	first := mat[0].Values[0][0].(float64)
	// RFC 3339 start has no fraction: the seconds of 'at' minus 10 minutes.
	if want := float64(at.Add(-10 * time.Minute).Unix()); first != want {
		t.Errorf("first point at %v, want %v", first, want)
	}

	// Scalar and string results.
	_, env, _ = call(t, http.MethodPost, base, "/api/v1/query", url.Values{"query": {"scalar(vector(1.5))"}, "time": {"1700000000.123"}})
	if string(env.Data) != `{"resultType":"scalar","result":[1700000000.123,"1.5"]}` {
		t.Errorf("scalar: %s", env.Data)
	}
	_, env, _ = call(t, http.MethodGet, base, "/api/v1/query", url.Values{"query": {`"hi"`}, "time": {"1700000000"}})
	if string(env.Data) != `{"resultType":"string","result":[1700000000,"hi"]}` {
		t.Errorf("string: %s", env.Data)
	}
	// Empty answers are empty arrays, not null.
	_, env, _ = call(t, http.MethodGet, base, "/api/v1/query", url.Values{"query": {`nothing_here`}})
	if string(env.Data) != `{"resultType":"vector","result":[]}` {
		t.Errorf("empty vector: %s", env.Data)
	}
	_, env, _ = call(t, http.MethodGet, base, "/api/v1/query_range", url.Values{"query": {`nothing_here`}, "start": {"0"}, "end": {"600"}, "step": {"60"}})
	if string(env.Data) != `{"resultType":"matrix","result":[]}` {
		t.Errorf("empty matrix: %s", env.Data)
	}
	// Special floats and exponent form, as Prometheus writes them.
	_, env, _ = call(t, http.MethodGet, base, "/api/v1/query", url.Values{"query": {`vector(1/0) or label_replace(vector(-1/0),"a","b","","") or label_replace(vector(0/0),"a","c","","") or label_replace(vector(1.5e-9),"a","d","","")`}, "time": {"10"}})
	for _, want := range []string{`"+Inf"`, `"-Inf"`, `"NaN"`, `"1.5e-09"`} {
		if !strings.Contains(string(env.Data), want) {
			t.Errorf("special floats: %s lacks %s", env.Data, want)
		}
	}
}

func TestQueryLimit(t *testing.T) {
	t0, base := setup(t, nil)
	_, env, _ := call(t, http.MethodGet, base, "/api/v1/query", url.Values{
		"query": {`istio_requests_total`}, "time": {unixString(t0.Add(10 * time.Minute))}, "limit": {"3"},
	})
	var qr queryResult
	mustf(t, json.Unmarshal(env.Data, &qr), "data")
	var vec []vectorSample
	mustf(t, json.Unmarshal(qr.Result, &vec), "result")
	if len(vec) != 3 || len(env.Warnings) != 1 || !strings.Contains(env.Warnings[0], "truncated") {
		t.Fatalf("limit 3: %d samples, warnings %v", len(vec), env.Warnings)
	}
}

func TestErrors(t *testing.T) {
	t0, base := setup(t, func(o *Options) {})
	_, baseSmall := setup(t, func(o *Options) { o.MaxSamples = 10 })
	at := unixString(t0.Add(20 * time.Minute))
	tests := []struct {
		name     string
		base     string
		path     string
		form     url.Values
		code     int
		errType  string
		contains string
	}{
		{"parse error", base, "/api/v1/query", url.Values{"query": {"sum(("}}, 400, "bad_data", `invalid parameter "query"`},
		{"empty query", base, "/api/v1/query", url.Values{}, 400, "bad_data", "query"},
		{"bad time", base, "/api/v1/query", url.Values{"query": {"1"}, "time": {"yesterday"}}, 400, "bad_data", `invalid parameter "time"`},
		{"bad limit", base, "/api/v1/query", url.Values{"query": {"1"}, "limit": {"-1"}}, 400, "bad_data", "limit"},
		{"bad timeout", base, "/api/v1/query", url.Values{"query": {"1"}, "timeout": {"soon"}}, 400, "bad_data", "timeout"},
		{"missing start", base, "/api/v1/query_range", url.Values{"query": {"1"}, "end": {"10"}, "step": {"1"}}, 400, "bad_data", `invalid parameter "start"`},
		{"end before start", base, "/api/v1/query_range", url.Values{"query": {"1"}, "start": {"10"}, "end": {"5"}, "step": {"1"}}, 400, "bad_data", "end timestamp must not be before start time"},
		{"zero step", base, "/api/v1/query_range", url.Values{"query": {"1"}, "start": {"0"}, "end": {"5"}, "step": {"0"}}, 400, "bad_data", "zero or negative"},
		{"too many points", base, "/api/v1/query_range", url.Values{"query": {"1"}, "start": {"0"}, "end": {"11001"}, "step": {"1"}}, 400, "bad_data", "11,000 points"},
		{"many-to-many", base, "/api/v1/query", url.Values{"query": {"istio_requests_total + on(reporter) istio_requests_total"}, "time": {at}}, 422, "execution", "many-to-many"},
		{"sample limit", baseSmall, "/api/v1/query", url.Values{"query": {"istio_requests_total"}, "time": {at}}, 422, "execution", "too many samples"},
		{"timeout", base, "/api/v1/query_range", url.Values{"query": {"sum(rate(istio_requests_total[5m]))"}, "start": {unixString(t0)}, "end": {at}, "step": {"15"}, "timeout": {"0.000000001"}}, 503, "timeout", ""},
		{"series without match", base, "/api/v1/series", url.Values{}, 400, "bad_data", "no match[]"},
		{"series empty matcher", base, "/api/v1/series", url.Values{"match[]": {`{job=~".*"}`}}, 400, "bad_data", "non-empty matcher"},
		{"bad label name", base, "/api/v1/label/%ff/values", url.Values{}, 400, "bad_data", "invalid label name"},
		{"format bad", base, "/api/v1/format_query", url.Values{"query": {"foo{"}}, 400, "bad_data", "query"},
	}
	for _, tc := range tests {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			t.Run(tc.name+"/"+method, func(t *testing.T) {
				code, env, hdr := call(t, method, tc.base, tc.path, tc.form)
				if code != tc.code || env.Status != "error" || env.ErrorType != tc.errType {
					t.Fatalf("got %d %q %q (%s), want %d %q", code, env.Status, env.ErrorType, env.Error, tc.code, tc.errType)
				}
				if !strings.Contains(env.Error, tc.contains) {
					t.Errorf("error %q lacks %q", env.Error, tc.contains)
				}
				if ct := hdr.Get("Content-Type"); ct != "application/json" {
					t.Errorf("content type %q", ct)
				}
			})
		}
	}
}

func TestSeriesLabels(t *testing.T) {
	t0, base := setup(t, func(o *Options) { o.MaxSeries = 5 })
	start, end := unixString(t0), unixString(t0.Add(time.Hour))

	_, env, _ := call(t, http.MethodPost, base, "/api/v1/series", url.Values{
		"match[]": {`istio_tcp_sent_bytes_total`, `meshlens_test_gauge{kind="gap"}`},
		"start":   {start}, "end": {end},
	})
	var series []map[string]string
	mustf(t, json.Unmarshal(env.Data, &series), "series %s", env.Data)
	if len(series) != 2 || series[0]["__name__"] != "istio_tcp_sent_bytes_total" || series[1]["kind"] != "gap" {
		t.Fatalf("series: %s", env.Data)
	}

	// MaxSeries caps the answer even without a limit parameter.
	_, env, _ = call(t, http.MethodGet, base, "/api/v1/series", url.Values{"match[]": {`istio_requests_total`}})
	mustf(t, json.Unmarshal(env.Data, &series), "series")
	if len(series) != 5 || len(env.Warnings) != 1 {
		t.Fatalf("capped series: %d, warnings %v", len(series), env.Warnings)
	}
	_, env, _ = call(t, http.MethodGet, base, "/api/v1/series", url.Values{"match[]": {`istio_requests_total`}, "limit": {"2"}})
	mustf(t, json.Unmarshal(env.Data, &series), "series")
	if len(series) != 2 {
		t.Fatalf("limit 2: %d", len(series))
	}

	var names []string
	_, env, _ = call(t, http.MethodGet, base, "/api/v1/labels", url.Values{"match[]": {`istio_tcp_sent_bytes_total`}})
	mustf(t, json.Unmarshal(env.Data, &names), "labels")
	want := []string{"__name__", "destination_service_name", "reporter", "request_protocol", "source_workload"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("labels %v, want %v", names, want)
	}
	_, env, _ = call(t, http.MethodGet, base, "/api/v1/labels", nil)
	mustf(t, json.Unmarshal(env.Data, &names), "labels")
	if len(names) != 5 || len(env.Warnings) != 1 {
		t.Fatalf("capped labels: %v %v", names, env.Warnings)
	}

	var vals []string
	_, env, _ = call(t, http.MethodPost, base, "/api/v1/label/reporter/values", url.Values{"match[]": {`istio_requests_total`}})
	mustf(t, json.Unmarshal(env.Data, &vals), "values")
	if !reflect.DeepEqual(vals, []string{"destination", "source"}) {
		t.Fatalf("reporter values %v", vals)
	}
	_, env, _ = call(t, http.MethodGet, base, "/api/v1/label/__name__/values", url.Values{"match[]": {`{__name__=~"istio_tcp.*|meshlens.*"}`}})
	mustf(t, json.Unmarshal(env.Data, &vals), "values")
	if !reflect.DeepEqual(vals, []string{"istio_tcp_sent_bytes_total", "meshlens_test_gauge"}) {
		t.Fatalf("name values %v", vals)
	}
	_, env, _ = call(t, http.MethodGet, base, "/api/v1/label/nosuchlabel/values", nil)
	if string(env.Data) != "[]" {
		t.Fatalf("no values: %s", env.Data)
	}
	// Time range outside the data: nothing.
	_, env, _ = call(t, http.MethodGet, base, "/api/v1/label/reporter/values", url.Values{"start": {"0"}, "end": {"100"}})
	if string(env.Data) != "[]" {
		t.Fatalf("values outside range: %s", env.Data)
	}
}

func TestStatusEndpoints(t *testing.T) {
	_, base := setup(t, func(o *Options) {
		o.ConfigYAML = func() string { return "listen: :8088\n" }
		o.Flags = func() map[string]string { return map[string]string{"storage.path": "/data"} }
		o.Metadata = func() map[string][]MetadataEntry {
			return map[string][]MetadataEntry{
				"istio_requests_total":                {{Type: "counter", Help: "Requests."}},
				"istio_request_duration_milliseconds": {{Type: "histogram", Help: "Duration.", Unit: "milliseconds"}},
			}
		}
	})
	tests := []struct {
		path string
		form url.Values
		want string
	}{
		{"/api/v1/status/config", nil, `{"yaml":"listen: :8088\n"}`},
		{"/api/v1/status/flags", nil, `{"storage.path":"/data"}`},
		{"/api/v1/metadata", url.Values{"metric": {"istio_requests_total"}}, `{"istio_requests_total":[{"type":"counter","help":"Requests.","unit":""}]}`},
		{"/api/v1/metadata", url.Values{"limit": {"1"}}, `{"istio_request_duration_milliseconds":[{"type":"histogram","help":"Duration.","unit":"milliseconds"}]}`},
		{"/api/v1/targets", nil, `{"activeTargets":[],"droppedTargetCounts":{},"droppedTargets":[]}`},
		{"/api/v1/targets/metadata", nil, `[]`},
		{"/api/v1/rules", nil, `{"groups":[]}`},
		{"/api/v1/alerts", nil, `{"alerts":[]}`},
		{"/api/v1/alertmanagers", nil, `{"activeAlertmanagers":[],"droppedAlertmanagers":[]}`},
		{"/api/v1/query_exemplars", url.Values{"query": {"istio_requests_total"}}, `[]`},
		{"/api/v1/format_query", url.Values{"query": {"sum(rate(foo{a='b'}[5m]))by(x)"}}, `"sum by (x) (rate(foo{a=\"b\"}[5m]))"`},
	}
	for _, tc := range tests {
		code, env, _ := call(t, http.MethodGet, base, tc.path, tc.form)
		if code != 200 || env.Status != "success" || string(env.Data) != tc.want {
			t.Errorf("%s: %d %s, want %s", tc.path, code, env.Data, tc.want)
		}
	}

	_, env, _ := call(t, http.MethodGet, base, "/api/v1/status/buildinfo", nil)
	var bi BuildInfo
	mustf(t, json.Unmarshal(env.Data, &bi), "buildinfo")
	if bi.Version != "1.2.3" || bi.Revision != "abc" || !strings.HasPrefix(bi.GoVersion, "go") {
		t.Errorf("buildinfo %+v", bi)
	}
	_, env, _ = call(t, http.MethodGet, base, "/api/v1/status/runtimeinfo", nil)
	var ri RuntimeInfo
	mustf(t, json.Unmarshal(env.Data, &ri), "runtimeinfo")
	if ri.GOMAXPROCS < 1 || ri.GoroutineCount < 1 || ri.StartTime.IsZero() {
		t.Errorf("runtimeinfo %+v", ri)
	}
}

func TestGzipAndBodyLimit(t *testing.T) {
	t0, base := setup(t, func(o *Options) { o.MaxRequestBytes = 1024 })
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/query_range?"+url.Values{
		"query": {"istio_requests_total"}, "start": {unixString(t0)}, "end": {unixString(t0.Add(30 * time.Minute))}, "step": {"15"},
	}.Encode(), nil)
	// Setting the header ourselves stops the transport from decompressing.
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	mustf(t, err, "get")
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("no gzip: %v", resp.Header)
	}
	zr, err := gzip.NewReader(resp.Body)
	mustf(t, err, "gzip reader")
	var env envelope
	mustf(t, json.NewDecoder(zr).Decode(&env), "decode")
	if env.Status != "success" {
		t.Fatalf("gzip answer: %+v", env)
	}

	// Without Accept-Encoding: plain.
	req.Header.Del("Accept-Encoding")
	req.Header.Set("Accept-Encoding", "identity")
	resp2, err := http.DefaultClient.Do(req)
	mustf(t, err, "get")
	resp2.Body.Close()
	if resp2.Header.Get("Content-Encoding") != "" {
		t.Fatalf("unexpected encoding %q", resp2.Header.Get("Content-Encoding"))
	}

	// A POST body over the bound is refused as bad data.
	code, env, _ := call(t, http.MethodPost, base, "/api/v1/query", url.Values{"query": {strings.Repeat("x", 2048)}})
	if code != 400 || env.ErrorType != "bad_data" {
		t.Fatalf("oversized body: %d %+v", code, env)
	}
}

func TestNativeHistogramJSON(t *testing.T) {
	db := openTSDB(t, nil)
	app := db.Appender(context.Background())
	l := labels.FromStrings("__name__", "meshlens_native_latency_seconds", "service", "reviews")
	// Schema 0: bucket i covers (2^(i-1), 2^i]. Two buckets: (0.5,1] holds
	// 2, (1,2] holds 3; one observation in the zero bucket.
	for i := range 5 {
		h := &histogram.Histogram{
			Schema:          0,
			Count:           uint64(6 * (i + 1)),
			Sum:             7.5 * float64(i+1),
			ZeroThreshold:   0.001,
			ZeroCount:       uint64(i + 1),
			PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}},
			PositiveBuckets: []int64{int64(2 * (i + 1)), int64(i + 1)}, // deltas: 2, 3
		}
		_, err := app.AppendHistogram(0, l, int64(i)*15000, h, nil)
		mustf(t, err, "append histogram")
	}
	mustf(t, app.Commit(), "commit")
	_, srv := newTestServer(t, Options{Queryable: db})

	_, env, _ := call(t, http.MethodGet, srv.URL, "/api/v1/query", url.Values{"query": {"meshlens_native_latency_seconds"}, "time": {"60"}})
	want := `{"resultType":"vector","result":[{"metric":{"__name__":"meshlens_native_latency_seconds","service":"reviews"},` +
		`"histogram":[60,{"count":"30","sum":"37.5","buckets":[[3,"-0.001","0.001","5"],[0,"0.5","1","10"],[0,"1","2","15"]]}]}]}`
	if string(env.Data) != want {
		t.Errorf("instant histogram:\n got %s\nwant %s", env.Data, want)
	}
	_, env, _ = call(t, http.MethodGet, srv.URL, "/api/v1/query_range", url.Values{"query": {"meshlens_native_latency_seconds"}, "start": {"0"}, "end": {"15"}, "step": {"15"}})
	want = `{"resultType":"matrix","result":[{"metric":{"__name__":"meshlens_native_latency_seconds","service":"reviews"},"histograms":[` +
		`[0,{"count":"6","sum":"7.5","buckets":[[3,"-0.001","0.001","1"],[0,"0.5","1","2"],[0,"1","2","3"]]}],` +
		`[15,{"count":"12","sum":"15","buckets":[[3,"-0.001","0.001","2"],[0,"0.5","1","4"],[0,"1","2","6"]]}]]}]}`
	if string(env.Data) != want {
		t.Errorf("range histogram:\n got %s\nwant %s", env.Data, want)
	}
	// Functions over native histograms give floats.
	_, env, _ = call(t, http.MethodGet, srv.URL, "/api/v1/query", url.Values{"query": {"histogram_count(meshlens_native_latency_seconds)"}, "time": {"60"}})
	if !strings.Contains(string(env.Data), `"value":[60,"30"]`) {
		t.Errorf("histogram_count: %s", env.Data)
	}
}

func TestParseQuery(t *testing.T) {
	_, base := setup(t, nil)
	// The example of Prometheus' docs/querying/api.md.
	_, env, _ := call(t, http.MethodGet, base, "/api/v1/parse_query", url.Values{"query": {"foo/bar"}})
	want := `{"bool":false,"lhs":{"matchers":[{"name":"__name__","type":"=","value":"foo"}],"name":"foo","offset":0,"startOrEnd":null,"timestamp":null,"type":"vectorSelector"},` +
		`"matching":{"card":"one-to-one","include":[],"labels":[],"on":false},"op":"/",` +
		`"rhs":{"matchers":[{"name":"__name__","type":"=","value":"bar"}],"name":"bar","offset":0,"startOrEnd":null,"timestamp":null,"type":"vectorSelector"},"type":"binaryExpr"}`
	if !jsonEqual(env.Data, json.RawMessage(want)) {
		t.Errorf("parse_query foo/bar:\n got %s\nwant %s", env.Data, want)
	}
	_, env, _ = call(t, http.MethodPost, base, "/api/v1/parse_query", url.Values{"query": {`histogram_quantile(0.9, sum by (le) (rate(x{a=~"b"}[5m] offset 1m))) > bool 1`}})
	var tree map[string]any
	mustf(t, json.Unmarshal(env.Data, &tree), "tree")
	lhs := tree["lhs"].(map[string]any)
	if tree["type"] != "binaryExpr" || tree["bool"] != true || lhs["type"] != "call" || lhs["func"].(map[string]any)["name"] != "histogram_quantile" {
		t.Fatalf("tree %s", env.Data)
	}
	agg := lhs["args"].([]any)[1].(map[string]any)
	ms := agg["expr"].(map[string]any)["args"].([]any)[0].(map[string]any)
	if agg["op"] != "sum" || ms["type"] != "matrixSelector" || ms["range"] != 300000.0 || ms["offset"] != 60000.0 {
		t.Fatalf("tree %s", env.Data)
	}
	code, env, _ := call(t, http.MethodGet, base, "/api/v1/parse_query", url.Values{"query": {"sum("}})
	if code != 400 || env.ErrorType != "bad_data" {
		t.Fatalf("bad parse_query: %d %+v", code, env)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	t0 := fixtureStart()
	a, srv := newTestServer(t, Options{Queryable: openTSDB(t, fixture(t0)), MaxConcurrentQueries: 1})
	a.slots <- struct{}{} // a query in flight
	code, env, _ := call(t, http.MethodGet, srv.URL, "/api/v1/query", url.Values{"query": {"1"}, "timeout": {"0.2"}})
	if code != 503 || env.ErrorType != "timeout" || !strings.Contains(env.Error, "query slot") {
		t.Fatalf("queued past its timeout: %d %+v", code, env)
	}
	<-a.slots
	code, _, _ = call(t, http.MethodGet, srv.URL, "/api/v1/query", url.Values{"query": {"1"}})
	if code != 200 {
		t.Fatalf("after the slot freed: %d", code)
	}
}

func TestGetPostEquality(t *testing.T) {
	t0, base := setup(t, nil)
	at := unixString(t0.Add(15*time.Minute + 7*time.Second))
	tests := []struct {
		path string
		form url.Values
	}{
		{"/api/v1/query", url.Values{"query": {`topk(2, rate(istio_requests_total[5m]))`}, "time": {at}}},
		{"/api/v1/query_range", url.Values{"query": {`sum(rate(istio_requests_total[1m]))`}, "start": {unixString(t0)}, "end": {at}, "step": {"30"}}},
		{"/api/v1/series", url.Values{"match[]": {`istio_tcp_sent_bytes_total`, `meshlens_test_gauge`}}},
		{"/api/v1/labels", url.Values{"match[]": {`istio_requests_total`}}},
		{"/api/v1/label/destination_service_name/values", url.Values{"match[]": {`istio_requests_total`}}},
		{"/api/v1/format_query", url.Values{"query": {`sum(x)by(y)`}}},
		{"/api/v1/parse_query", url.Values{"query": {`a + on(b) group_left(c) d`}}},
		{"/api/v1/query_exemplars", url.Values{"query": {`istio_requests_total`}}},
	}
	for _, tc := range tests {
		cg, eg, _ := call(t, http.MethodGet, base, tc.path, tc.form)
		cp, ep, _ := call(t, http.MethodPost, base, tc.path, tc.form)
		if cg != 200 || cp != 200 || !bytes.Equal(eg.Data, ep.Data) || len(eg.Data) < 2 {
			t.Errorf("%s: GET %d %s, POST %d %s", tc.path, cg, eg.Data, cp, ep.Data)
		}
	}
}

func TestBuildInfoDefaultVersion(t *testing.T) {
	_, base := setup(t, func(o *Options) { o.BuildInfo = BuildInfo{} })
	_, env, _ := call(t, http.MethodGet, base, "/api/v1/status/buildinfo", nil)
	var bi BuildInfo
	mustf(t, json.Unmarshal(env.Data, &bi), "buildinfo")
	if !strings.HasPrefix(bi.Version, "3.") {
		t.Fatalf("default version %q, want a Prometheus 3 version", bi.Version)
	}
}
