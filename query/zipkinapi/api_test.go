package zipkinapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/pebblestore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

func newServer(t *testing.T) (*httptest.Server, time.Time) {
	t.Helper()
	keys := []string{"http.method", "http.status_code"}
	s, err := pebblestore.Open(pebblestore.Config{Dir: t.TempDir(), AutocompleteKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	base := tracestoretest.Base()
	if err := s.WriteTraces(context.Background(), tracestoretest.Fixture(base)); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	New(s, keys, nil).Register(mux)
	srv := httptest.NewServer(mux) // 127.0.0.1
	t.Cleanup(srv.Close)
	return srv, base
}

func get(t *testing.T, srv *httptest.Server, path string, wantStatus int, out any) string {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("GET %s = %d, want %d: %s", path, resp.StatusCode, wantStatus, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
	}
	return string(body)
}

// zipkinParams renders a store query as /api/v2/traces parameters; ok is
// false when Zipkin cannot express it.
func zipkinParams(q tracestore.Query) (url.Values, bool) {
	if q.SpanKind != "" {
		return nil, false
	}
	v := url.Values{}
	if q.Service != "" {
		v.Set("serviceName", q.Service)
	}
	if q.Operation != "" {
		v.Set("spanName", q.Operation)
	}
	if q.RemoteService != "" {
		v.Set("remoteServiceName", q.RemoteService)
	}
	var terms []string
	for k, val := range q.Tags {
		terms = append(terms, k+"="+val)
	}
	sort.Strings(terms)
	terms = append(terms, q.Annotations...)
	if len(terms) > 0 {
		v.Set("annotationQuery", strings.Join(terms, " and "))
	}
	if q.DurationMin > 0 {
		v.Set("minDuration", strconv.FormatInt(q.DurationMin.Microseconds(), 10))
	}
	if q.DurationMax > 0 {
		v.Set("maxDuration", strconv.FormatInt(q.DurationMax.Microseconds(), 10))
	}
	end := time.Now()
	if !q.StartMax.IsZero() {
		end = q.StartMax
		v.Set("endTs", strconv.FormatInt(end.UnixMilli(), 10))
	}
	if !q.StartMin.IsZero() {
		v.Set("lookback", strconv.FormatInt(end.UnixMilli()-q.StartMin.UnixMilli(), 10))
	}
	limit := q.Limit
	if limit == 0 {
		limit = tracestore.DefaultLimit // the suite's expectation, not Zipkin's 10
	}
	v.Set("limit", strconv.Itoa(limit))
	return v, true
}

type span struct {
	TraceID        string            `json:"traceId"`
	ID             string            `json:"id"`
	ParentID       string            `json:"parentId"`
	Name           string            `json:"name"`
	Kind           string            `json:"kind"`
	Timestamp      int64             `json:"timestamp"`
	Duration       int64             `json:"duration"`
	Shared         bool              `json:"shared"`
	LocalEndpoint  map[string]any    `json:"localEndpoint"`
	RemoteEndpoint map[string]any    `json:"remoteEndpoint"`
	Annotations    []map[string]any  `json:"annotations"`
	Tags           map[string]string `json:"tags"`
}

func TestFindTracesSemantics(t *testing.T) {
	srv, base := newServer(t)
	ran := 0
	for _, tc := range tracestoretest.FindCases() {
		v, ok := zipkinParams(tc.Query(base))
		if !ok {
			continue
		}
		ran++
		t.Run(tc.Name, func(t *testing.T) {
			var traces [][]span
			get(t, srv, "/api/v2/traces?"+v.Encode(), 200, &traces)
			var got, want []string
			for _, tr := range traces {
				got = append(got, tr[0].TraceID)
				if len(tr) == 0 {
					t.Fatal("empty trace")
				}
			}
			for _, id := range tc.Want {
				want = append(want, tracestore.TraceIDString(id))
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: traces %v, want %v", v.Encode(), got, want)
			}
		})
	}
	if ran < 25 {
		t.Fatalf("only %d cases ran", ran)
	}
}

func TestZipkinDefaults(t *testing.T) {
	srv, _ := newServer(t)
	var traces [][]span
	get(t, srv, "/api/v2/traces", 200, &traces)
	if len(traces) != 4 {
		t.Errorf("no parameters: %d traces, want all 4", len(traces))
	}
	get(t, srv, "/api/v2/traces?spanName=all&serviceName=frontend&limit=1", 200, &traces)
	if len(traces) != 1 || traces[0][0].TraceID != tracestoretest.TraceBookinfo.String() {
		t.Errorf("spanName=all limit=1: %v", traces)
	}
	// lookback excludes the 10-minute-old trace.
	get(t, srv, "/api/v2/traces?serviceName=productpage&lookback=60000", 200, &traces)
	if len(traces) != 0 {
		t.Errorf("lookback 1m: %d traces", len(traces))
	}
}

func TestTraceJSONShape(t *testing.T) {
	srv, base := newServer(t)
	body := get(t, srv, "/api/v2/trace/"+tracestoretest.TraceBookinfo.String(), 200, nil)
	var raw []map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil || len(raw) != 5 {
		t.Fatalf("trace: %v %s", err, body)
	}
	allowed := map[string]bool{"traceId": true, "id": true, "parentId": true, "name": true, "kind": true, "timestamp": true,
		"duration": true, "shared": true, "debug": true, "localEndpoint": true, "remoteEndpoint": true, "annotations": true, "tags": true}
	for _, sp := range raw {
		for k := range sp {
			if !allowed[k] {
				t.Errorf("unexpected field %q in %v", k, sp)
			}
		}
		for _, k := range []string{"traceId", "id", "name", "kind", "timestamp", "duration", "localEndpoint"} {
			if _, ok := sp[k]; !ok {
				t.Errorf("missing %q in %v", k, sp)
			}
		}
	}
	var spans []span
	_ = json.Unmarshal([]byte(body), &spans)
	halves := map[string]span{}
	for _, s := range spans {
		if s.ID == tracestoretest.SpanReviews.String() {
			halves[s.Kind] = s
		}
	}
	cl, sv := halves["CLIENT"], halves["SERVER"]
	if len(halves) != 2 || !sv.Shared || cl.Shared {
		t.Fatalf("shared span halves = %+v", halves)
	}
	if sv.LocalEndpoint["serviceName"] != "reviews" || cl.LocalEndpoint["serviceName"] != "frontend" ||
		cl.RemoteEndpoint["serviceName"] != "reviews" {
		t.Errorf("endpoints: client %v -> %v, server %v", cl.LocalEndpoint, cl.RemoteEndpoint, sv.LocalEndpoint)
	}
	if sv.Timestamp != base.Add(6*time.Millisecond).UnixMicro() || sv.Duration != 70000 || sv.ParentID != tracestoretest.SpanRoot.String() {
		t.Errorf("server half timing/parent: %+v", sv)
	}

	// 64-bit trace: 16 hex digits, annotation from the event with its
	// attributes as JSON (OpenTelemetry's Zipkin mapping).
	var tr []span
	get(t, srv, "/api/v2/trace/00f067aa0ba902b7", 200, &tr)
	if len(tr) != 1 || tr[0].TraceID != "00f067aa0ba902b7" || len(tr[0].Annotations) != 1 || tr[0].Annotations[0]["value"] != `cache miss: {"event.note":"cache miss"}` {
		t.Errorf("64-bit trace: %+v", tr)
	}
	if tr[0].Tags["http.status_code"] != "201" {
		t.Errorf("int attribute as Zipkin string tag: %v", tr[0].Tags)
	}
	var many [][]span
	get(t, srv, "/api/v2/traceMany?traceIds=00f067aa0ba902b7,"+tracestoretest.TraceSlow.String()+",0123", 200, &many)
	if len(many) != 2 || len(many[1]) != 3 {
		t.Errorf("traceMany: %d traces", len(many))
	}
}

func TestMetadataEndpoints(t *testing.T) {
	srv, _ := newServer(t)
	var list []string
	check := func(path string, want ...string) {
		t.Helper()
		list = nil
		get(t, srv, path, 200, &list)
		if !slices.Equal(list, want) && !(len(list) == 0 && len(want) == 0) {
			t.Errorf("%s = %v, want %v", path, list, want)
		}
	}
	check("/api/v2/services", "details", "frontend", "productpage", "ratings", "reviews")
	check("/api/v2/spans?serviceName=frontend", "GET /", "GET /reviews")
	check("/api/v2/spans?serviceName=frontend&spanKind=client", "GET /reviews")
	check("/api/v2/spans?serviceName=nosuch")
	check("/api/v2/remoteServices?serviceName=frontend", "reviews")
	check("/api/v2/autocompleteKeys", "http.method", "http.status_code")
	check("/api/v2/autocompleteValues?key=http.method", "GET", "POST")
	check("/api/v2/autocompleteValues?key=http.status_code", "200", "201", "503")
	check("/api/v2/autocompleteValues?key=host.name")

	var deps []struct {
		Parent, Child string
		CallCount     int
	}
	get(t, srv, fmt.Sprintf("/api/v2/dependencies?endTs=%d&lookback=3600000", time.Now().UnixMilli()), 200, &deps)
	if len(deps) != 3 || deps[0].Parent != "frontend" || deps[0].Child != "reviews" || deps[0].CallCount != 1 {
		t.Errorf("dependencies = %+v", deps)
	}
}

func TestErrors(t *testing.T) {
	srv, _ := newServer(t)
	for _, tc := range []struct {
		path   string
		status int
		msg    string
	}{
		{"/api/v2/trace/0123456789abcdef0123456789abcdef", 404, "not found"},
		{"/api/v2/trace/nothex", 400, "not hex"},
		{"/api/v2/traceMany", 400, "traceIds"},
		{"/api/v2/traceMany?traceIds=a,zz", 400, "not hex"},
		{"/api/v2/spans", 400, "serviceName"},
		{"/api/v2/remoteServices", 400, "serviceName"},
		{"/api/v2/autocompleteValues", 400, "key"},
		{"/api/v2/dependencies", 400, "endTs"},
		{"/api/v2/dependencies?endTs=1&lookback=x", 400, "lookback"},
		{"/api/v2/traces?minDuration=1s", 400, "minDuration"},
		{"/api/v2/traces?maxDuration=-1", 400, "maxDuration"},
		{"/api/v2/traces?minDuration=100&maxDuration=10", 400, "maxDuration"},
		{"/api/v2/traces?endTs=soon", 400, "endTs"},
		{"/api/v2/traces?lookback=-1", 400, "lookback"},
		{"/api/v2/traces?limit=0", 400, "limit"},
		{"/api/v2/traces?annotationQuery=%3Dv", 400, "no key"},
		{"/api/v2/spans?serviceName=a&spanKind=sideways", 400, "span kind"},
	} {
		body := get(t, srv, tc.path, tc.status, nil)
		if !strings.Contains(body, tc.msg) {
			t.Errorf("GET %s: %q does not mention %q", tc.path, body, tc.msg)
		}
	}
}

func TestParseAnnotationQuery(t *testing.T) {
	for _, tc := range []struct {
		in   string
		tags map[string]string
		anns []string
	}{
		{"", map[string]string{}, nil},
		{"error", map[string]string{}, []string{"error"}},
		{"error and http.method=GET", map[string]string{"http.method": "GET"}, []string{"error"}},
		{"http.url=/a=b and  cache miss ", map[string]string{"http.url": "/a=b"}, []string{"cache miss"}},
		{"k= and x", map[string]string{"k": ""}, []string{"x"}},
	} {
		tags, anns, err := ParseAnnotationQuery(tc.in)
		if err != nil || fmt.Sprint(tags) != fmt.Sprint(tc.tags) || !slices.Equal(anns, tc.anns) {
			t.Errorf("ParseAnnotationQuery(%q) = %v %v %v", tc.in, tags, anns, err)
		}
	}
}
