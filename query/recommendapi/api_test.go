package recommendapi

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/processors/recommend"
)

const currentYAML = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - route: [{destination: {host: ratings}}]
    timeout: 100ms
`

// bookinfo generates 30 minutes of Bookinfo traffic with the demo's two
// incidents: ratings slows down for a fifth of its requests in the last ten
// minutes, and reviews answers 503 in 5-second bursts every two minutes.
// It returns the successful reviews→ratings latencies.
func bookinfo(t *testing.T, e *recommend.Engine, end time.Time) []time.Duration {
	rng := rand.New(rand.NewPCG(11, 12))
	start := end.Add(-30 * time.Minute)
	const rps = 100
	var ratings []time.Duration
	batch := make([]model.Call, 0, 2048)
	id := func(s string) model.Identity { return model.Identity{Service: s, Namespace: "default"} }
	flush := func() {
		if err := e.ConsumeCalls(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		batch = batch[:0]
	}
	ln := func(medianMs, sigma float64) time.Duration {
		return time.Duration(math.Exp(rng.NormFloat64()*sigma) * medianMs * float64(time.Millisecond))
	}
	for i := 0; i < 30*60*rps; i++ {
		at := start.Add(time.Duration(i) * time.Second / rps)
		since := at.Sub(start)
		call := func(src, dst, ep string, d time.Duration, code int) {
			for _, dp := range []model.DetectPoint{model.DetectClient, model.DetectServer} {
				batch = append(batch, model.Call{Source: id(src), Destination: id(dst), Endpoint: ep, Method: "GET",
					Start: at, Duration: d, StatusCode: code, GRPCStatus: -1, DetectPoint: dp})
			}
		}
		rd := ln(4, 0.3)
		if since > 20*time.Minute && rng.Float64() < 0.2 {
			rd = ln(800, 0.4) // the slow ratings incident
		}
		ratings = append(ratings, rd)
		call("reviews", "ratings", "GET:/ratings/{id}", rd, 200)
		code := 200
		if since%(2*time.Minute) < 5*time.Second {
			code = 503 // burst of 503s
		}
		call("productpage", "reviews", "GET:/reviews/{id}", rd+ln(10, 0.3), code)
		call("productpage", "details", "GET:/details/{id}", ln(3, 0.3), 200)
		if len(batch) > 2000 {
			flush()
		}
	}
	flush()
	return ratings
}

func get(t *testing.T, url string, v any) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if v != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v: %s", url, err, b)
		}
	}
	return resp.StatusCode, string(b)
}

func TestDemoIncidentsThroughAPI(t *testing.T) {
	end := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
	e, err := recommend.New(recommend.Config{Now: func() time.Time { return end }}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cur := recommend.NewCurrentConfig()
	if err := cur.AddYAML([]byte(currentYAML), "current.yaml"); err != nil {
		t.Fatal(err)
	}
	cur.Loaded = true
	if err := e.SetCurrentConfig(cur); err != nil {
		t.Fatal(err)
	}
	ratings := bookinfo(t, e, end)
	e.Recompute(end)

	mux := http.NewServeMux()
	New(e, nil).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	base := srv.URL + Base

	// The slow ratings service: the timeout follows the incident's tail.
	var resp Response
	if code, body := get(t, base+"?kind=timeout&service=ratings", &resp); code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	var rt *recommend.Recommendation
	for i := range resp.Recommendations {
		r := &resp.Recommendations[i]
		if r.Edge.Source == "reviews.default" && r.Edge.Endpoint == "" {
			rt = r
		}
		if r.Kind != recommend.KindTimeout {
			t.Fatalf("kind filter leaked %s", r.Kind)
		}
	}
	if rt == nil {
		t.Fatalf("no reviews→ratings timeout: %+v", resp)
	}
	// The slowdown began 10 minutes before the end: the engine sees the
	// rise in its recent window and raises the timeout above the whole
	// window's p99.9, towards the p99.9 of the requests since the rise.
	since := slices.Clone(ratings[len(ratings)*2/3:])
	slices.Sort(ratings)
	slices.Sort(since)
	p999 := ms(ratings[int(math.Ceil(0.999*float64(len(ratings))))-1])
	p999since := ms(since[int(math.Ceil(0.999*float64(len(since))))-1])
	if got := rt.Recommended.TimeoutMs; got < p999 || got > p999since*1.1 {
		t.Fatalf("ratings timeout %.0f ms, want between the window's p99.9 %.0f ms and the p99.9 since the slowdown %.0f ms (+10%%)", got, p999, p999since)
	}
	if rt.Current == nil || rt.Current.TimeoutMs != 100 || len(rt.Evidence.Histogram) == 0 || rt.Evidence.MarkerMs != rt.Recommended.TimeoutMs || rt.Explanation == "" {
		t.Fatalf("timeout lacks current value, evidence or explanation: %+v", rt)
	}
	// The 100 ms timeout in force cuts the slow requests: flagged.
	var mis Response
	get(t, base+"?kind=misconfig&service=ratings", &mis)
	if !slices.ContainsFunc(mis.Recommendations, func(r recommend.Recommendation) bool {
		return strings.HasSuffix(r.ID, ":timeout_too_low") && r.Severity == "high"
	}) {
		t.Fatalf("100 ms ratings timeout not flagged: %+v", mis.Recommendations)
	}
	// The 503 bursts: retries on 503 within a budget.
	var rr Response
	get(t, base+"?kind=retry&service=reviews", &rr)
	var retry *recommend.Recommendation
	for i := range rr.Recommendations {
		if r := &rr.Recommendations[i]; r.Edge.Source == "productpage.default" && r.Edge.Destination == "reviews.default" && r.Edge.Endpoint == "" {
			retry = r
		}
	}
	if retry == nil {
		t.Fatalf("no productpage→reviews retry: %+v", rr)
	}
	if retry.Evidence.Failures["unavailable"] == 0 || !strings.Contains(retry.Recommended.RetryOn, "503") ||
		retry.Recommended.RetryBudgetPercent != 20 || retry.Recommended.Retries < 1 {
		t.Fatalf("503 bursts not reflected in the retry policy: %+v %+v", retry.Recommended, retry.Evidence)
	}
	// Chain: productpage→reviews covers reviews→ratings.
	var ch Response
	get(t, base+"?kind=chain", &ch)
	for _, r := range ch.Recommendations {
		if r.Recommended != nil && r.Recommended.DeadlineMs <= 0 {
			t.Fatalf("deadline missing: %+v", r)
		}
	}
	code, y := get(t, base+"/istio.yaml?service=ratings", nil)
	if code != 200 || !strings.Contains(y, "kind: VirtualService") || !strings.Contains(y, "ratings.default.svc.cluster.local") {
		t.Fatalf("istio.yaml %d:\n%s", code, y)
	}
	back := recommend.NewCurrentConfig()
	if err := back.AddYAML([]byte(y), "istio.yaml"); err != nil {
		t.Fatalf("exported YAML does not parse: %v", err)
	}
	if code, d := get(t, base+"/diff?format=text&service=ratings", nil); code != 200 || !strings.Contains(d, "-  http[from reviews.default].timeout: 100ms") {
		t.Fatalf("diff %d:\n%s", code, d)
	}
	var hist struct {
		Count   int                `json:"count"`
		Changes []recommend.Change `json:"changes"`
	}
	if get(t, base+"/history?limit=5", &hist); hist.Count != 5 || hist.Changes[0].Reason == "" {
		t.Fatalf("history: %+v", hist)
	}
	for _, bad := range []string{"?kind=bogus", "/history?limit=0", "/diff?format=xml"} {
		if code, body := get(t, base+bad, nil); code != 400 || !strings.Contains(body, "error") {
			t.Fatalf("%s: want 400 with an error, got %d %s", bad, code, body)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
