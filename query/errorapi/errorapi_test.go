package errorapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/processors/errorlog"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func serve(t *testing.T, src Source) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	New(src, nil).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, query string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(srv.URL + "/api/meshlens/v1/errors?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	return resp.StatusCode, b
}

func TestErrorsAPI(t *testing.T) {
	log := errorlog.New(errorlog.Config{}, nil, nil)
	mk := func(dst string, status int, flags string, at time.Time) model.Call {
		return model.Call{
			Source:      model.Identity{Service: "productpage", Namespace: "bookinfo", Instance: "productpage-v1-1"},
			Destination: model.Identity{Service: dst, Namespace: "bookinfo", Instance: dst + "-v2-1", Version: "v2"},
			Endpoint:    "GET:/" + dst + "/{id}", Method: "GET", Path: "/" + dst + "/7",
			Start: at, Duration: 1500 * time.Microsecond, StatusCode: status, GRPCStatus: -1,
			ResponseFlags: flags, DetectPoint: model.DetectServer, RequestID: "rid-1",
			UpstreamCluster: "inbound|9080||",
		}
	}
	g := mk("cart", 200, "", t0.Add(3*time.Second))
	g.Protocol, g.GRPCStatus = model.ProtocolGRPC, 14
	if err := log.ConsumeCalls(context.Background(), []model.Call{
		mk("reviews", 503, "UF,URX", t0),
		mk("reviews", 200, "", t0), // not an error: not recorded
		mk("ratings", 404, "", t0.Add(time.Second)),
		mk("details", 0, "UC", t0.Add(2*time.Second)),
		g,
	}); err != nil {
		t.Fatal(err)
	}
	srv := serve(t, log)

	code, body := get(t, srv, "service=reviews&code=5xx")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	var resp struct {
		Records []map[string]any `json:"records"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Records) != 1 {
		t.Fatalf("records: %s", body)
	}
	r := resp.Records[0]
	src := r["source"].(map[string]any)
	dst := r["destination"].(map[string]any)
	if r["time"] != "2026-11-27T12:00:00Z" || src["service"] != "productpage" || src["instance"] != "productpage-v1-1" ||
		dst["service"] != "reviews" || dst["namespace"] != "bookinfo" || dst["version"] != "v2" ||
		r["endpoint"] != "GET:/reviews/{id}" || r["method"] != "GET" || r["path"] != "/reviews/7" ||
		r["status"] != 503.0 || r["duration_ms"] != 1.5 || r["request_id"] != "rid-1" ||
		r["upstream_cluster"] != "inbound|9080||" || r["detect_point"] != "server" {
		t.Errorf("record %s", body)
	}
	if _, ok := r["grpc_status"]; ok {
		t.Errorf("grpc_status on an HTTP record: %s", body)
	}
	if flags := r["response_flags"].([]any); len(flags) != 2 || flags[0] != "UF" || flags[1] != "URX" {
		t.Errorf("flags %v", r["response_flags"])
	}

	tests := []struct {
		query string
		want  []string // destination services, newest first
	}{
		{"", []string{"cart", "details", "ratings", "reviews"}},
		{"limit=2", []string{"cart", "details"}},
		{"flag=UC", []string{"details"}},
		{"code=grpc:14", []string{"cart"}},
		{"code=404", []string{"ratings"}},
		{"namespace=bookinfo&service=productpage&limit=1", []string{"cart"}},
		{"start=" + url.QueryEscape(t0.Add(time.Second).Format(time.RFC3339)) + "&end=1795780802", []string{"details", "ratings"}},
		{"service=nobody", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			code, body := get(t, srv, tt.query)
			if code != 200 {
				t.Fatalf("status %d: %s", code, body)
			}
			var resp struct {
				Records []errorlog.Record `json:"records"`
			}
			if err := json.Unmarshal(body, &resp); err != nil {
				t.Fatal(err)
			}
			got := []string{}
			for _, r := range resp.Records {
				got = append(got, r.Destination.Service)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			if !strings.Contains(string(body), `"records":[`) {
				t.Fatalf("records is not a JSON array: %s", body)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	srv := serve(t, errorlog.New(errorlog.Config{}, nil, nil))
	for q, field := range map[string]string{
		"code=abc":                            "code",
		"code=600":                            "code",
		"limit=0":                             "limit",
		"limit=x":                             "limit",
		"start=yesterday":                     "start",
		"end=NaN":                             "end",
		"start=100&end=50":                    "end",
		"service=" + strings.Repeat("a", 600): "service",
	} {
		code, body := get(t, srv, q)
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		if code != http.StatusBadRequest || !strings.HasPrefix(e.Error, field+":") {
			t.Errorf("%s: %d %s, want 400 naming %s", q, code, body, field)
		}
	}
	// Only GET is routed.
	resp, err := http.Post(srv.URL+"/api/meshlens/v1/errors", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

type failing struct{}

func (failing) Query(context.Context, errorlog.Filter) ([]errorlog.Record, error) {
	return nil, errors.New("boom")
}

func TestSourceFailure(t *testing.T) {
	code, body := get(t, serve(t, failing{}), "")
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "boom") {
		t.Fatalf("%d %s", code, body)
	}
}

func TestLimitCapped(t *testing.T) {
	f, err := ParseFilter(url.Values{"limit": {"999999"}})
	if err != nil || f.Limit != MaxLimit {
		t.Fatalf("%v %v", f.Limit, err)
	}
	f, _ = ParseFilter(url.Values{})
	if f.Limit != DefaultLimit {
		t.Fatalf("default limit %d", f.Limit)
	}
}

// FuzzParseFilter: any query string parses or fails with an error naming a
// parameter, never panics, and a parsed filter is within bounds.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"", "service=a&code=5xx", "start=1.5&end=2", "limit=-1", "code=grpc:16", "start=2026-01-01T00:00:00Z", "end=1e300"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		flt, err := ParseFilter(q)
		if err != nil {
			if !strings.Contains(err.Error(), ":") {
				t.Fatalf("error without a parameter name: %v", err)
			}
			return
		}
		if flt.Limit < 1 || flt.Limit > MaxLimit {
			t.Fatalf("limit %d", flt.Limit)
		}
	})
}
