package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/ui"
)

// stubAPIs answers the public APIs the UI reads with fixed data, for the
// tests that need data the real binary cannot be made to produce quickly (a
// 200-service mesh, a 5,000-span trace) or that must not depend on other
// packages (the XSS case). The UI itself is the real embedded one.
type stubAPIs struct {
	topology map[string]any
	services []string
	traces   map[string]map[string]any // by trace id
	recs     []map[string]any
}

func (s *stubAPIs) serve(t testing.TB) string {
	t.Helper()
	mux := http.NewServeMux()
	ui.Register(mux)
	writeJSON := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /api/meshlens/v1/topology", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.topology)
	})
	mux.HandleFunc("GET /api/v1/label/{name}/values", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"status": "success", "data": []string{"default"}})
	})
	empty := func(w http.ResponseWriter, r *http.Request) {
		typ := "vector"
		if strings.HasSuffix(r.URL.Path, "query_range") {
			typ = "matrix"
		}
		writeJSON(w, map[string]any{"status": "success", "data": map[string]any{"resultType": typ, "result": []any{}}})
	}
	mux.HandleFunc("GET /api/v1/query", empty)
	mux.HandleFunc("GET /api/v1/query_range", empty)
	mux.HandleFunc("GET /api/services", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"data": s.services, "total": len(s.services), "errors": nil})
	})
	mux.HandleFunc("GET /api/services/{service}/operations", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"data": []string{"GET /", "<b>op</b>"}, "errors": nil})
	})
	mux.HandleFunc("GET /api/traces", func(w http.ResponseWriter, r *http.Request) {
		var out []any
		for _, tr := range s.traces {
			out = append(out, tr)
		}
		writeJSON(w, map[string]any{"data": out, "total": len(out), "errors": nil})
	})
	mux.HandleFunc("GET /api/traces/{id}", func(w http.ResponseWriter, r *http.Request) {
		tr, ok := s.traces[r.PathValue("id")]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			writeJSON(w, map[string]any{"data": nil, "errors": []map[string]any{{"code": 404, "msg": "trace not found"}}})
			return
		}
		writeJSON(w, map[string]any{"data": []any{tr}, "errors": nil})
	})
	mux.HandleFunc("GET /api/meshlens/v1/recommendations", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"generated_at": time.Now().UTC(), "count": len(s.recs), "recommendations": s.recs})
	})
	mux.HandleFunc("GET /api/meshlens/v1/recommendations/istio.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		fmt.Fprint(w, "apiVersion: networking.istio.io/v1\nkind: VirtualService\n")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// syntheticMesh is a layered mesh of n services: a few entry services, each
// tier calling two or three services of the next tiers, some edges failing.
func syntheticMesh(n int, seed uint64) map[string]any {
	rng := rand.New(rand.NewPCG(seed, seed))
	tiers := 8
	var nodes, edges []map[string]any
	tierOf := make([]int, n)
	for i := range n {
		tierOf[i] = i * tiers / n
		nodes = append(nodes, map[string]any{
			"id": fmt.Sprintf("ns%d/svc-%03d", i%5, i), "name": fmt.Sprintf("svc-%03d", i), "namespace": fmt.Sprintf("ns%d", i%5), "kind": "service",
			"inbound":             map[string]any{"requestRate": rng.Float64() * 100, "errorRate": 0, "errorRatio": []float64{0, 0, 0, 0.02, 0.08}[rng.IntN(5)], "latencyMs": map[string]any{"p50": 5, "p95": 40, "p99": 90}},
			"outboundRequestRate": rng.Float64() * 100,
		})
	}
	seen := map[[2]int]bool{}
	for i := range n {
		if tierOf[i] == tiers-1 {
			continue
		}
		for range 2 + rng.IntN(2) {
			// Mostly the next tier, sometimes further down.
			lo := (tierOf[i] + 1) * n / tiers
			hi := min(n, (tierOf[i]+2+rng.IntN(2))*n/tiers)
			j := lo + rng.IntN(max(1, hi-lo))
			if j >= n || seen[[2]int{i, j}] {
				continue
			}
			seen[[2]int{i, j}] = true
			er := []float64{0, 0, 0, 0.02, 0.1}[rng.IntN(5)]
			edges = append(edges, map[string]any{
				"id": fmt.Sprintf("%v->%v", nodes[i]["id"], nodes[j]["id"]), "source": nodes[i]["id"], "target": nodes[j]["id"],
				"protocol": []string{"http", "grpc", "tcp"}[rng.IntN(3)], "mtls": []string{"mutual_tls", "none"}[rng.IntN(2)],
				"reporter": "destination", "reporters": []string{"source", "destination"},
				"requestRate": rng.Float64() * 50, "errorRate": 0, "errorRatio": er, "latencyMs": map[string]any{"p50": 3, "p95": 20 + rng.Float64()*200, "p99": 400},
			})
		}
	}
	return map[string]any{"level": "service", "nodes": nodes, "edges": edges, "truncated": false}
}

// syntheticTrace is a Jaeger-UI trace of n spans over a few services: a
// tree whose hops are Envoy client/server pairs sharing a span id, with
// some errors, tags and logs. If spans is set, every span gets those tags.
func syntheticTrace(id string, n int, service string, extraTags []map[string]any) map[string]any {
	base := uint64(time.Now().Add(-2 * time.Minute).UnixMicro())
	procs := map[string]any{}
	svcs := []string{service, "reviews", "ratings", "details", "db"}
	for i, s := range svcs {
		procs[fmt.Sprintf("p%d", i)] = map[string]any{"serviceName": s, "tags": []map[string]any{{"key": "hostname", "type": "string", "value": s + "-pod"}}}
	}
	var spans []map[string]any
	add := func(spanID, parent, kind string, proc int, start, dur uint64, op string, isErr bool) {
		tags := []map[string]any{{"key": "span.kind", "type": "string", "value": kind}, {"key": "http.status_code", "type": "int64", "value": 200}}
		if isErr {
			tags = append(tags, map[string]any{"key": "error", "type": "bool", "value": true})
		}
		tags = append(tags, extraTags...)
		var refs []map[string]any
		if parent != "" {
			refs = append(refs, map[string]any{"refType": "CHILD_OF", "traceID": id, "spanID": parent})
		}
		spans = append(spans, map[string]any{
			"traceID": id, "spanID": spanID, "operationName": op, "references": refs, "startTime": base + start, "duration": dur,
			"tags": tags, "logs": []map[string]any{{"timestamp": base + start + 1, "fields": []map[string]any{{"key": "event", "type": "string", "value": "sent"}}}},
			"processID": fmt.Sprintf("p%d", proc), "warnings": nil,
		})
	}
	// Root server span, then hops: every hop is 2 spans (client + server
	// sharing the id) while room remains, the last one a single span.
	add(fmt.Sprintf("%016x", 1), "", "server", 0, 0, uint64(n)*100, "GET /productpage", false)
	count := 1
	parents := []string{fmt.Sprintf("%016x", 1)}
	for i := 2; count < n; i++ {
		sid := fmt.Sprintf("%016x", i)
		parent := parents[(i*7)%len(parents)]
		start := uint64(i) * 40
		isErr := i%97 == 0
		proc := 1 + i%4
		if n-count >= 2 {
			add(sid, parent, "client", 0+(i%2), start, 900, fmt.Sprintf("GET /call/%d", i), isErr)
			add(sid, parent, "server", proc, start+50, 800, fmt.Sprintf("GET /call/%d", i), isErr)
			count += 2
		} else {
			add(sid, parent, "internal", proc, start, 300, "work", isErr)
			count++
		}
		if len(parents) < 200 {
			parents = append(parents, sid)
		}
	}
	return map[string]any{"traceID": id, "spans": spans, "processes": procs, "warnings": nil}
}
