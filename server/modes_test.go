package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/storage/remotewrite"
)

func TestValidateMode(t *testing.T) {
	rw := remotewrite.Config{Targets: []remotewrite.Target{{URL: "http://127.0.0.1:9090/api/v1/write"}}}
	tests := []struct {
		name string
		mode Mode
		edit func(*Config)
		want []string // substrings of the error; none = valid
	}{
		{"serve needs nothing", ModeAll, func(*Config) {}, nil},
		{"collector without remote write", ModeCollector, func(*Config) {}, []string{"storage.remote_write.targets: collector mode needs"}},
		{"collector with remote write", ModeCollector, func(c *Config) { c.Storage.RemoteWrite = rw }, nil},
		{"collector name contradicts the external label", ModeCollector, func(c *Config) {
			c.Storage.RemoteWrite = rw
			c.Storage.RemoteWrite.ExternalLabels = map[string]string{"collector": "a"}
			c.Collector.Name = "b"
		}, []string{"collector.name: \"b\" contradicts"}},
		{"query without remote read", ModeQuery, func(*Config) {}, []string{"storage.remote_read.url: query mode needs"}},
		{"query with remote read", ModeQuery, func(c *Config) { c.Storage.RemoteRead.URL = "http://127.0.0.1:9090/api/v1/read" }, nil},
		{"query with a bad URL and the demo", ModeQuery, func(c *Config) {
			c.Storage.RemoteRead.URL = "prometheus:9090"
			c.Demo.Enabled = true
		}, []string{"storage.remote_read.url: \"prometheus:9090\" is not an http(s) URL", "demo.enabled (--demo): query mode has no receivers"}},
		{"query with no timeout", ModeQuery, func(c *Config) {
			c.Storage.RemoteRead.URL = "http://127.0.0.1:9090/api/v1/read"
			c.Storage.RemoteRead.Timeout = 0
		}, []string{"storage.remote_read.timeout: must be positive"}},
		{"unknown mode", Mode("ingester"), func(*Config) {}, []string{`mode "ingester" is not serve, collector or query`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			err := c.ValidateMode(tt.mode)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want errors %q, got none", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestLoadModeConfigNamesTheMissingSetting(t *testing.T) {
	_, _, err := LoadModeConfig(ModeQuery, nil, nil, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "storage.remote_read.url") {
		t.Fatalf("query mode without remote read: %v", err)
	}
	cfg, fl, err := LoadModeConfig(ModeQuery, []string{"--storage.remote_read.url=http://127.0.0.1:1/api/v1/read"}, []string{"MESHLENS_COLLECTOR_NAME=c-1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if fl.Mode != ModeQuery || cfg.Storage.RemoteRead.URL != "http://127.0.0.1:1/api/v1/read" || cfg.Collector.Name != "c-1" {
		t.Fatalf("mode %q, remote read %q, collector name %q", fl.Mode, cfg.Storage.RemoteRead.URL, cfg.Collector.Name)
	}
}

func TestCollectorLabel(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatalf("os.Hostname: %v", err)
	}
	tests := []struct {
		name     string
		mode     Mode
		cfgName  string
		ext      map[string]string
		want     map[string]string
		wantSame bool // the external labels are left as configured
	}{
		{"serve adds nothing", ModeAll, "x", map[string]string{"region": "eu"}, map[string]string{"region": "eu"}, true},
		{"collector defaults to the host name", ModeCollector, "", map[string]string{"region": "eu"}, map[string]string{"region": "eu", "collector": host}, false},
		{"collector.name wins", ModeCollector, "c-7", nil, map[string]string{"collector": "c-7"}, false},
		{"an external label set by hand is kept", ModeCollector, "", map[string]string{"collector": "by-hand"}, map[string]string{"collector": "by-hand"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Collector.Name = tt.cfgName
			c.Storage.RemoteWrite.ExternalLabels = tt.ext
			s := &Server{cfg: c, flags: Flags{Mode: tt.mode}}
			rw, err := s.remoteWriteConfig()
			if err != nil {
				t.Fatal(err)
			}
			if len(rw.ExternalLabels) != len(tt.want) {
				t.Fatalf("external labels %v, want %v", rw.ExternalLabels, tt.want)
			}
			for k, v := range tt.want {
				if rw.ExternalLabels[k] != v {
					t.Fatalf("external labels %v, want %v", rw.ExternalLabels, tt.want)
				}
			}
			// The configured map is never modified in place.
			if _, added := tt.ext["collector"]; !tt.wantSame && tt.ext != nil && !added && len(tt.ext) == len(rw.ExternalLabels) {
				t.Fatalf("configured external labels modified: %v", tt.ext)
			}
		})
	}
}

// TestQueryNodeWithoutTraceStore builds a query node against an unreachable
// remote-read endpoint (nothing is read at start) and checks that each API
// whose data lives elsewhere answers 503 saying why, in its own format.
func TestQueryNodeWithoutTraceStore(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Storage.Path = t.TempDir()
	cfg.Storage.RemoteRead.URL = "http://127.0.0.1:1/api/v1/read"
	cfg.Listen.HTTP = "127.0.0.1:0"
	if err := cfg.ValidateMode(ModeQuery); err != nil {
		t.Fatal(err)
	}
	srv, err := New(context.Background(), cfg, Flags{Mode: ModeQuery}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.closeAll(context.Background())
	if srv.queue != nil || srv.agg != nil || srv.grpcServer != nil {
		t.Fatal("a query node built a pipeline or a gRPC server")
	}
	if _, err := os.Stat(cfg.MetricStore().Path); !os.IsNotExist(err) {
		t.Errorf("a query node opened a local TSDB at %s (%v)", cfg.MetricStore().Path, err)
	}
	tests := []struct {
		path, contentType, says string
	}{
		{"/api/services", "application/json", "no shared trace store"},
		{"/api/traces/0af7651916cd43dd8448eb211c80319c", "application/json", "storage.traces.backend: cassandra"},
		{"/api/v3/services", "application/json", "no shared trace store"},
		{"/api/v2/services", "text/plain; charset=utf-8", "no shared trace store"},
		{"/api/v2/trace/0af7651916cd43dd8448eb211c80319c", "text/plain; charset=utf-8", "no shared trace store"},
		{"/api/meshlens/v1/errors", "application/json", "not available on a query node"},
		{"/api/meshlens/v1/recommendations", "application/json", "not available on a query node"},
		{"/api/meshlens/v1/recommendations/istio.yaml", "application/json", "not available on a query node"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		srv.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Content-Type") != tt.contentType || !strings.Contains(rec.Body.String(), tt.says) {
			t.Errorf("GET %s: %d %s %q, want 503 %s saying %q", tt.path, rec.Code, rec.Header().Get("Content-Type"), rec.Body.String(), tt.contentType, tt.says)
		}
	}
	// The Prometheus API is served (it fails to reach the remote, which is
	// a query error, not a missing route).
	rec := httptest.NewRecorder()
	srv.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/query?query=up", nil))
	if rec.Code == http.StatusNotFound || !strings.Contains(rec.Body.String(), "remote_read") {
		t.Errorf("GET /api/v1/query: %d %s, want a remote_read error", rec.Code, rec.Body.String())
	}
}

// fakeQuerier returns fixed series from Select.
type fakeQuerier struct {
	storage.Querier
	series []labels.Labels
	got    []*labels.Matcher
}

func (f *fakeQuerier) Select(_ context.Context, _ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	f.got = ms
	var out []storage.Series
	for _, l := range f.series {
		if slices.IndexFunc(ms, func(m *labels.Matcher) bool { return !m.Matches(l.Get(m.Name)) }) < 0 {
			var kv []string
			l.Range(func(lb labels.Label) { kv = append(kv, lb.Name, lb.Value) })
			out = append(out, storage.MockSeries(nil, nil, nil, kv))
		}
	}
	return &sliceSet{s: out, i: -1}
}

type sliceSet struct {
	s []storage.Series
	i int
}

func (s *sliceSet) Next() bool                        { s.i++; return s.i < len(s.s) }
func (s *sliceSet) At() storage.Series                { return s.s[s.i] }
func (s *sliceSet) Err() error                        { return nil }
func (s *sliceSet) Warnings() annotations.Annotations { return nil }

func TestLabelQuerierAnswersFromSeries(t *testing.T) {
	f := &fakeQuerier{series: []labels.Labels{
		labels.FromStrings("__name__", "istio_requests_total", "collector", "a", "destination_service_name", "reviews"),
		labels.FromStrings("__name__", "istio_requests_total", "collector", "b", "destination_service_name", "reviews"),
		labels.FromStrings("__name__", "istio_requests_total", "collector", "b", "destination_service_name", "details"),
		labels.FromStrings("__name__", "meshlens_service_calls_total", "collector", "a", "service", "ratings"),
	}}
	q := labelQuerier{Querier: f}
	ctx := context.Background()
	vals, _, err := q.LabelValues(ctx, "destination_service_name", nil)
	if err != nil || !slices.Equal(vals, []string{"details", "reviews"}) {
		t.Fatalf("values %v, %v", vals, err)
	}
	if len(f.got) != 1 || f.got[0].Name != "__name__" {
		t.Errorf("without matchers the querier must select every named series, selected %v", f.got)
	}
	vals, _, _ = q.LabelValues(ctx, "collector", &storage.LabelHints{Limit: 1})
	if !slices.Equal(vals, []string{"a"}) {
		t.Errorf("limited values %v, want [a]", vals)
	}
	names, _, err := q.LabelNames(ctx, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "meshlens_service_calls_total"))
	if err != nil || !slices.Equal(names, []string{"__name__", "collector", "service"}) {
		t.Fatalf("names %v, %v", names, err)
	}
}

func TestStatusConfigRedactsRemoteRead(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Storage.RemoteRead = RemoteReadConfig{URL: "https://reader:hunter2-secret@mimir.example/prometheus/api/v1/read",
		Headers: map[string]string{"Authorization": "Bearer sekret-token", "X-Scope-OrgID": "mesh"}}
	out, _ := yaml.Marshal(redacted(cfg))
	for _, secret := range []string{"hunter2-secret", "sekret-token"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("/api/v1/status/config shows %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(string(out), "reader@mimir.example") || !strings.Contains(string(out), "X-Scope-OrgID") {
		t.Errorf("redaction removed more than the credentials:\n%s", out)
	}
	if cfg.Storage.RemoteRead.Headers["Authorization"] != "Bearer sekret-token" {
		t.Error("redacted changed the running configuration")
	}
}
