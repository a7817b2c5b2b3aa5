package tenancy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"team-a", true},
		{"Org_1.prod", true},
		{"a!-_.*'()", true},
		{strings.Repeat("x", MaxIDLength), true},
		{strings.Repeat("x", MaxIDLength+1), false},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"../etc", false},
		{"a b", false},
		{"a|b", false},
		{"é", false},
		{"a\x00", false},
	} {
		err := ValidateID(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidID) {
			t.Errorf("ValidateID(%q) = %v, not ErrInvalidID", tc.id, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range []Config{
		{Header: ""},
		{Header: "X Tenant"},
		{Header: DefaultHeader, DefaultTenant: "a/b"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestMiddleware(t *testing.T) {
	tn, err := New(Config{Enabled: true, Header: DefaultHeader, DefaultTenant: "fallback"})
	if err != nil {
		t.Fatal(err)
	}
	h := tn.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := FromContext(r.Context())
		_, _ = io.WriteString(w, "tenant="+id)
	}), HTTPRule)
	for _, tc := range []struct {
		name, method, path string
		headers            []string
		code               int
		body               string
	}{
		{"query with tenant", "GET", "/api/v1/query", []string{"team-a"}, 200, "tenant=team-a"},
		{"query without tenant", "GET", "/api/traces", nil, 401, "X-Scope-OrgID"},
		{"query with empty tenant", "GET", "/api/services", []string{" "}, 401, "empty"},
		{"query with invalid tenant", "GET", "/api/v1/labels", []string{"../b"}, 400, "not allowed"},
		{"query with two tenants", "GET", "/federate", []string{"a", "b"}, 400, "exactly one"},
		{"post query needs a tenant", "POST", "/api/v1/query", nil, 401, "X-Scope-OrgID"},
		{"ingest with tenant", "POST", "/api/v2/spans", []string{"team-b"}, 200, "tenant=team-b"},
		{"ingest falls back", "POST", "/api/v2/spans", nil, 200, "tenant=fallback"},
		{"otlp ingest falls back", "POST", "/v1/traces", nil, 200, "tenant=fallback"},
		{"ingest with invalid tenant", "POST", "/api/v1/spans", []string{strings.Repeat("x", 151)}, 400, "151 characters"},
		{"probe", "GET", "/healthz", nil, 200, "tenant="},
		{"self metrics", "GET", "/metrics", nil, 200, "tenant="},
		{"ui file", "GET", "/static/app.js", nil, 200, "tenant="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, nil)
			for _, v := range tc.headers {
				r.Header.Add("X-Scope-OrgID", v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.body) {
				t.Errorf("%s %s: %d %q, want %d containing %q", tc.method, tc.path, w.Code, w.Body, tc.code, tc.body)
			}
		})
	}
}

func TestGRPCInterceptors(t *testing.T) {
	tn, err := New(Config{Enabled: true, Header: DefaultHeader})
	if err != nil {
		t.Fatal(err)
	}
	unary := tn.UnaryInterceptor(DefaultGRPCRule)
	seen := ""
	handler := func(ctx context.Context, _ any) (any, error) {
		seen, _ = FromContext(ctx)
		return nil, nil
	}
	for _, tc := range []struct {
		method string
		md     metadata.MD
		code   codes.Code
		tenant string
	}{
		{"/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs", metadata.Pairs("x-scope-orgid", "team-a"), codes.OK, "team-a"},
		{"/opentelemetry.proto.collector.trace.v1.TraceService/Export", nil, codes.Unauthenticated, ""},
		{"/jaeger.storage.v2.TraceReader/GetServices", metadata.Pairs("x-scope-orgid", "a/b"), codes.InvalidArgument, ""},
		{"/jaeger.storage.v2.TraceReader/GetServices", metadata.Pairs("x-scope-orgid", "team-b"), codes.OK, "team-b"},
		{"/grpc.health.v1.Health/Check", nil, codes.OK, ""},
	} {
		seen = ""
		ctx := context.Background()
		if tc.md != nil {
			ctx = metadata.NewIncomingContext(ctx, tc.md)
		}
		_, err := unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: tc.method}, handler)
		if status.Code(err) != tc.code || seen != tc.tenant {
			t.Errorf("%s %v: code %v tenant %q, want %v %q", tc.method, tc.md, status.Code(err), seen, tc.code, tc.tenant)
		}
	}
}

// TestDefaultTenantNotForReads: a configured default tenant stands in for
// writes only; a gRPC read without the header is refused.
func TestDefaultTenantNotForReads(t *testing.T) {
	tn, err := New(Config{Enabled: true, Header: DefaultHeader, DefaultTenant: "fallback"})
	if err != nil {
		t.Fatal(err)
	}
	unary := tn.UnaryInterceptor(DefaultGRPCRule)
	_, err = unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/jaeger.storage.v2.TraceReader/FindTraces"},
		func(context.Context, any) (any, error) { return nil, nil })
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("read without tenant: %v, want Unauthenticated", err)
	}
}

func TestAuthorizerRefusesUnboundTenant(t *testing.T) {
	tn, err := New(Config{Enabled: true, Header: DefaultHeader})
	if err != nil {
		t.Fatal(err)
	}
	h := tn.WithAuthorizer(func(_ context.Context, id string) error {
		if id != "team-a" {
			return errors.New("bound to team-a")
		}
		return nil
	}).Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), HTTPRule)
	for id, want := range map[string]int{"team-a": 200, "team-b": 403} {
		r := httptest.NewRequest("GET", "/api/v1/query", nil)
		r.Header.Set(DefaultHeader, id)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("%s: %d %s, want %d", id, w.Code, w.Body, want)
		}
	}
}

// TestRefusalNamesTheHeader: every refusal of the middleware is JSON in
// the Prometheus error shape with tenantHeader set to the configured
// header, the signal the UI tells a tenant refusal from an auth one by.
func TestRefusalNamesTheHeader(t *testing.T) {
	tn, err := New(Config{Enabled: true, Header: "X-Tenant"})
	if err != nil {
		t.Fatal(err)
	}
	h := tn.WithAuthorizer(func(_ context.Context, id string) error {
		if id == "team-b" {
			return errors.New("bound to team-a")
		}
		return nil
	}).Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), HTTPRule)
	for _, tc := range []struct {
		name    string
		headers []string
		code    int
	}{
		{"missing", nil, 401},
		{"empty", []string{""}, 401},
		{"invalid", []string{"a\x00b"}, 400},
		{"not allowed", []string{"team-b"}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/v1/query", nil)
			for _, v := range tc.headers {
				r.Header.Add("X-Tenant", v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			var body struct {
				Status, ErrorType, Error, TenantHeader string
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q is not JSON: %v", w.Body, err)
			}
			if w.Code != tc.code || body.Status != "error" || body.TenantHeader != "X-Tenant" || body.Error == "" || w.Header().Get("Content-Type") != "application/json" {
				t.Errorf("%d %+v, want %d with tenantHeader X-Tenant", w.Code, body, tc.code)
			}
		})
	}
}
