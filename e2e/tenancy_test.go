package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshlens/meshlens/query/remotestorage/storagev2"
)

// tenantGet sends GET path to the query port as tenant ("" = no header)
// and returns the status and body.
func tenantGet(t *testing.T, in *instance, tenant, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", in.url(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// tenantQuery runs an instant PromQL query as tenant and returns the
// values of the answer, keyed by the series' tenant label.
func tenantQuery(t *testing.T, in *instance, tenant, q string) (map[string]float64, error) {
	t.Helper()
	code, body := tenantGet(t, in, tenant, "/api/v1/query?query="+url.QueryEscape(q))
	if code != 200 {
		return nil, fmt.Errorf("%d: %s", code, body)
	}
	var ans struct {
		Data struct {
			Result []promSample `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &ans); err != nil {
		return nil, fmt.Errorf("decode %q: %w", body, err)
	}
	out := map[string]float64{}
	for _, s := range ans.Data.Result {
		out[s.Metric["tenant"]] = s.float(t)
	}
	return out, nil
}

// zipkinShop is a Zipkin v2 JSON trace: front calls back.
func tenantZipkinShop(traceID, front, back string) []byte {
	now := time.Now().Add(-2 * time.Second).UnixMicro()
	return fmt.Appendf(nil, `[
 {"traceId":%q,"id":"0000000000000001","kind":"SERVER","name":"get /","timestamp":%d,"duration":9000,
  "localEndpoint":{"serviceName":%q},"tags":{"http.method":"GET","http.path":"/","http.status_code":"200"}},
 {"traceId":%q,"id":"0000000000000002","parentId":"0000000000000001","kind":"CLIENT","name":"get /items","timestamp":%d,"duration":5000,
  "localEndpoint":{"serviceName":%q},"remoteEndpoint":{"serviceName":%q},"tags":{"http.method":"GET","http.path":"/items","http.status_code":"200"}},
 {"traceId":%q,"id":"0000000000000003","parentId":"0000000000000002","kind":"SERVER","name":"get /items","timestamp":%d,"duration":4000,
  "localEndpoint":{"serviceName":%q},"tags":{"http.method":"GET","http.path":"/items","http.status_code":"200"}}
]`, traceID, now, front, traceID, now+1000, front, back, traceID, now+1500, back)
}

func tenantPostZipkin(t *testing.T, in *instance, tenant string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+in.addrs["zipkin"]+"/api/v2/spans", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// otlpSpan is one OTLP server span of service; claimed, when set, is the
// tenant attribute a client tries to write itself.
func tenantOTLPSpan(traceID byte, service, claimed string) ptraceotlp.ExportRequest {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", service)
	if claimed != "" {
		rs.Resource().Attributes().PutStr("meshlens.tenant", claimed)
	}
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetTraceID(pcommon.TraceID{0xee, traceID, 1})
	sp.SetSpanID(pcommon.SpanID{traceID, 1})
	sp.SetKind(ptrace.SpanKindServer)
	sp.SetName("GET /otlp")
	start := time.Now().Add(-2 * time.Second)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(3 * time.Millisecond)))
	sp.Attributes().PutStr("http.request.method", "GET")
	sp.Attributes().PutInt("http.response.status_code", 200)
	return ptraceotlp.NewExportRequestFromTraces(td)
}

func outgoingTenant(ctx context.Context, tenant string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "x-scope-orgid", tenant)
}

// TestMultiTenancy drives the binary with multi_tenancy on: tenants
// team-a and team-b send access logs (ALS gRPC), Zipkin spans (HTTP) and
// OTLP spans (gRPC); each then sees only its own series, topology, services
// and traces, and requests without a valid tenant are refused.
func TestMultiTenancy(t *testing.T) {
	in := start(t, t.TempDir(), fastFlush, "--multi_tenancy.enabled=true")
	ctx := ctxTimeout(t, 2*time.Minute)
	const (
		a, b     = "team-a", "team-b"
		traceA   = "00000000000000000000000000a0a0a0"
		traceB   = "00000000000000000000000000b0b0b0"
		traceIDB = "b0b0b0"
	)

	// Writes without a tenant, or with an invalid one, are refused.
	if code, body := tenantPostZipkin(t, in, "", tenantZipkinShop(traceA, "shop-a", "cart-a")); code != 401 || !strings.Contains(body, "X-Scope-OrgID") {
		t.Errorf("zipkin without tenant: %d %s, want 401 naming the header", code, body)
	}
	if code, body := tenantPostZipkin(t, in, "team/a", tenantZipkinShop(traceA, "shop-a", "cart-a")); code != 400 || !strings.Contains(body, "not allowed") {
		t.Errorf("zipkin with tenant team/a: %d %s, want 400", code, body)
	}
	conn := dialALS(t, in.addrs["otlp_grpc"])
	otlp := ptraceotlp.NewGRPCClient(conn)
	if _, err := otlp.Export(ctx, tenantOTLPSpan(9, "nobody", "")); status.Code(err) != codes.Unauthenticated {
		t.Errorf("otlp grpc without tenant: %v, want Unauthenticated", err)
	}
	if _, err := otlp.Export(outgoingTenant(ctx, strings.Repeat("x", 151)), tenantOTLPSpan(9, "nobody", "")); status.Code(err) != codes.InvalidArgument {
		t.Errorf("otlp grpc with a 151-character tenant: %v, want InvalidArgument", err)
	}
	als := dialALS(t, in.addrs["grpc"])
	s := openALS(t, ctx, als, node("productpage-v1-abc", "productpage", "v1", productpageIP))
	_ = s.send(httpEntry(time.Now(), time.Millisecond, 200, "outbound|9080||reviews.default.svc.cluster.local", reviewsIP, "127.0.0.6", productpageIP))
	if err := s.close(); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ALS without tenant: %v, want Unauthenticated", err)
	}

	// Tenant data: the same Bookinfo hop for both (100 and 40 requests),
	// distinct span services, and team-b claiming team-a in a resource.
	sendBookinfoHop(t, outgoingTenant(ctx, a), in.addrs["grpc"], 100)
	sendBookinfoHop(t, outgoingTenant(ctx, b), in.addrs["grpc"], 40)
	if code, body := tenantPostZipkin(t, in, a, tenantZipkinShop(traceA, "shop-a", "cart-a")); code != 202 {
		t.Fatalf("zipkin as team-a: %d %s", code, body)
	}
	if code, body := tenantPostZipkin(t, in, b, tenantZipkinShop(traceB, "billing-b", "ledger-b")); code != 202 {
		t.Fatalf("zipkin as team-b: %d %s", code, body)
	}
	if _, err := otlp.Export(outgoingTenant(ctx, a), tenantOTLPSpan(1, "otlp-a", "")); err != nil {
		t.Fatalf("otlp as team-a: %v", err)
	}
	if _, err := otlp.Export(outgoingTenant(ctx, b), tenantOTLPSpan(2, "spoof-b", a)); err != nil {
		t.Fatalf("otlp as team-b: %v", err)
	}

	// Series: each tenant counts only its own requests, labelled with it.
	const total = `sum by (tenant) (istio_requests_total{reporter="destination",destination_service_name="reviews"})`
	for tenant, want := range map[string]float64{a: 100, b: 40} {
		eventually(t, 30*time.Second, tenant+" sees its requests", func() (bool, string) {
			got, err := tenantQuery(t, in, tenant, total)
			if err != nil {
				return false, err.Error()
			}
			return len(got) == 1 && got[tenant] == want, fmt.Sprintf("%v", got)
		})
	}
	for _, tc := range []struct {
		tenant, q string
		want      map[string]float64
	}{
		{a, `sum by (tenant) (istio_requests_total{tenant="team-b"})`, map[string]float64{}},
		{b, `count by (tenant) ({__name__=~".+"})`, nil},                                                          // checked below: only team-b
		{a, `sum by (tenant) (traces_span_metrics_calls_total{service_name="shop-a"})`, map[string]float64{a: 2}}, // server and client span
		{b, `sum by (tenant) (traces_span_metrics_calls_total{service_name="shop-a"})`, map[string]float64{}},
		{b, `sum by (tenant) (traces_span_metrics_calls_total{service_name="spoof-b"})`, map[string]float64{b: 1}},
	} {
		eventually(t, 30*time.Second, tc.tenant+" "+tc.q, func() (bool, string) {
			got, err := tenantQuery(t, in, tc.tenant, tc.q)
			if err != nil {
				return false, err.Error()
			}
			if tc.want == nil {
				return len(got) == 1 && got[tc.tenant] > 0, fmt.Sprintf("%v", got)
			}
			if len(got) != len(tc.want) {
				return false, fmt.Sprintf("%v", got)
			}
			for k, v := range tc.want {
				if got[k] != v {
					return false, fmt.Sprintf("%v", got)
				}
			}
			return true, ""
		})
	}
	// Label values, series and federation go through the same matcher.
	if code, body := tenantGet(t, in, a, "/api/v1/label/tenant/values"); code != 200 || !strings.Contains(body, `"team-a"`) || strings.Contains(body, "team-b") {
		t.Errorf("team-a tenant label values: %d %s", code, body)
	}
	if code, body := tenantGet(t, in, b, "/api/v1/label/service_name/values"); code != 200 || strings.Contains(body, "shop-a") || !strings.Contains(body, "billing-b") {
		t.Errorf("team-b service_name values: %d %s", code, body)
	}
	if code, body := tenantGet(t, in, b, "/federate?match[]="+url.QueryEscape(`{__name__=~"traces_span_metrics_calls_total"}`)); code != 200 || strings.Contains(body, "team-a") || !strings.Contains(body, `tenant="team-b"`) {
		t.Errorf("team-b federate: %d %.500s", code, body)
	}

	// Topology: span-derived edges of one tenant only.
	eventually(t, 30*time.Second, "team-a topology", func() (bool, string) {
		code, body := tenantGet(t, in, a, "/api/meshlens/v1/topology")
		return code == 200 && strings.Contains(body, "cart-a") && strings.Contains(body, "reviews") && !strings.Contains(body, "ledger-b"), fmt.Sprintf("%d %.300s", code, body)
	})
	eventually(t, 30*time.Second, "team-b topology", func() (bool, string) {
		code, body := tenantGet(t, in, b, "/api/meshlens/v1/topology")
		return code == 200 && strings.Contains(body, "ledger-b") && !strings.Contains(body, "cart-a"), fmt.Sprintf("%d %.300s", code, body)
	})

	// Jaeger: services, searches and trace by id.
	services := func(tenant string) []string {
		code, body := tenantGet(t, in, tenant, "/api/services")
		if code != 200 {
			t.Fatalf("services as %s: %d %s", tenant, code, body)
		}
		var ans struct{ Data []string }
		if err := json.Unmarshal([]byte(body), &ans); err != nil {
			t.Fatal(err)
		}
		return ans.Data
	}
	eventually(t, 20*time.Second, "services per tenant", func() (bool, string) {
		sa, sb := strings.Join(services(a), ","), strings.Join(services(b), ",")
		return sa == "cart-a,otlp-a,shop-a" && sb == "billing-b,ledger-b,spoof-b", "team-a: " + sa + " team-b: " + sb
	})
	if code, body := tenantGet(t, in, b, "/api/traces/"+traceA); code != 404 {
		t.Errorf("team-b reads team-a's trace: %d %.200s", code, body)
	}
	if code, body := tenantGet(t, in, a, "/api/traces/"+traceA); code != 200 || !strings.Contains(body, "cart-a") {
		t.Errorf("team-a reads its trace: %d %.200s", code, body)
	}
	if code, body := tenantGet(t, in, a, "/api/traces/"+traceIDB); code != 404 {
		t.Errorf("team-a reads team-b's trace by short id: %d %.200s", code, body)
	}
	if code, body := tenantGet(t, in, b, "/api/traces?service=shop-a&lookback=1h"); code != 200 || strings.Contains(body, "a0a0a0") {
		t.Errorf("team-b searches team-a's service: %d %.300s", code, body)
	}
	if code, body := tenantGet(t, in, b, "/api/traces?service=billing-b&lookback=1h"); code != 200 || !strings.Contains(body, "b0b0b0") {
		t.Errorf("team-b searches its service: %d %.300s", code, body)
	}
	if code, body := tenantGet(t, in, a, "/api/v2/services"); code != 200 || strings.Contains(body, "billing-b") || !strings.Contains(body, "shop-a") {
		t.Errorf("team-a zipkin services: %d %s", code, body)
	}

	// Error records: each tenant's 503s, only.
	for _, tc := range []struct{ own, other string }{{a, b}, {b, a}} {
		eventually(t, 10*time.Second, tc.own+" error records", func() (bool, string) {
			code, body := tenantGet(t, in, tc.own, "/api/meshlens/v1/errors?service=reviews")
			return code == 200 && strings.Contains(body, `"tenant":"`+tc.own+`"`) && strings.Contains(body, `"status":503`) && !strings.Contains(body, tc.other), fmt.Sprintf("%d %.300s", code, body)
		})
	}

	// Jaeger remote storage (gRPC) reads the tenant from metadata.
	rs := storagev2.NewTraceReaderClient(als)
	if _, err := rs.GetServices(ctx, &storagev2.GetServicesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("remote storage without tenant: %v, want Unauthenticated", err)
	}
	if resp, err := rs.GetServices(outgoingTenant(ctx, b), &storagev2.GetServicesRequest{}); err != nil || strings.Join(resp.GetServices(), ",") != "billing-b,ledger-b,spoof-b" {
		t.Errorf("remote storage services of team-b: %v, %v", resp.GetServices(), err)
	}

	// Queries without a valid tenant are refused.
	for _, tc := range []struct {
		tenant, path string
		code         int
	}{
		{"", "/api/v1/query?query=up", 401},
		{"", "/api/services", 401},
		{"", "/api/meshlens/v1/topology", 401},
		{"", "/api/meshlens/v1/errors", 401},
		{"..", "/api/traces/" + traceA, 400},
		{"a b", "/api/v1/series?match[]=up", 400},
		{"", "/healthz", 200},
	} {
		if code, body := tenantGet(t, in, tc.tenant, tc.path); code != tc.code {
			t.Errorf("GET %s as %q: %d %.200s, want %d", tc.path, tc.tenant, code, body, tc.code)
		}
	}
}

// TestMultiTenancyWithAuthAndMetricsService: Envoy Metrics Service samples
// get the sender's tenant label, and with auth a token bound to a tenant
// reads only that tenant (403 for another), while an unbound token may
// name any.
func TestMultiTenancyWithAuthAndMetricsService(t *testing.T) {
	dir := t.TempDir()
	const boundA, ops = "e2e-team-a-token-0123456789", "e2e-ops-token-0123456789"
	tokens := filepath.Join(dir, "tokens.yaml")
	writeFile(t, tokens, []byte("- {token: "+boundA+", permissions: [read], name: team-a-grafana, tenants: [team-a]}\n- {token: "+ops+", permissions: [read], name: ops}\n"))
	in := start(t, filepath.Join(dir, "data"), "--multi_tenancy.enabled=true", "--auth.tokens_file="+tokens)
	ctx := ctxTimeout(t, time.Minute)
	conn := dialALS(t, in.addrs["grpc"])
	const cluster = "outbound|9080||reviews.default.svc.cluster.local"
	for tenant, v := range map[string]float64{"team-a": 42, "team-b": 5} {
		stream, err := metricsv3.NewMetricsServiceClient(conn).StreamMetrics(outgoingTenant(ctx, tenant))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&metricsv3.StreamMetricsMessage{
			Identifier: &metricsv3.StreamMetricsMessage_Identifier{Node: node("productpage-v1-abc", "productpage", "v1", productpageIP)},
			EnvoyMetrics: []*dto.MetricFamily{{Name: proto.String("cluster." + cluster + ".upstream_rq_total"), Type: dto.MetricType_COUNTER.Enum(),
				Metric: []*dto.Metric{{Counter: &dto.Counter{Value: proto.Float64(v)}, TimestampMs: proto.Int64(time.Now().UnixMilli())}}}},
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.CloseAndRecv(); err != nil {
			t.Fatalf("metrics stream of %s not acknowledged: %v", tenant, err)
		}
	}
	get := func(token, tenant, q string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", in.url("/api/v1/query?query="+url.QueryEscape(q)), nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("X-Scope-OrgID", tenant)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const q = `sum by (tenant) (envoy_cluster_upstream_rq_total{service="productpage"})`
	eventually(t, 20*time.Second, "team-a's Envoy stats", func() (bool, string) {
		code, body := get(boundA, "team-a", q)
		return code == 200 && strings.Contains(body, `"tenant":"team-a"`) && strings.Contains(body, `"42"`) && !strings.Contains(body, "team-b"), fmt.Sprintf("%d %s", code, body)
	})
	if code, body := get(boundA, "team-b", q); code != 403 || !strings.Contains(body, "team-a-grafana") {
		t.Errorf("team-a's token naming team-b: %d %s, want 403 naming the token", code, body)
	}
	if code, body := get(ops, "team-b", q); code != 200 || !strings.Contains(body, `"tenant":"team-b"`) || !strings.Contains(body, `"5"`) || strings.Contains(body, "team-a") {
		t.Errorf("unbound token as team-b: %d %s", code, body)
	}
	if code, _ := get("", "team-a", q); code != 401 {
		t.Errorf("no token: %d, want 401", code)
	}
}
