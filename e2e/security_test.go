package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meshlens/meshlens/server/security/certtest"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestALSOverMutualTLSWithSPIFFEAllowList runs the binary with mutual TLS on
// the gRPC port, TLS on the Zipkin port and a SPIFFE allow-list on ALS: an
// allowed sidecar's logs are acknowledged and counted, any other identity
// is refused with PERMISSION_DENIED, plain text is refused, and Zipkin
// accepts spans over HTTPS.
func TestALSOverMutualTLSWithSPIFFEAllowList(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "e2e-ca")
	sc, sk := ca.Issue(t, "meshlens", "")
	for name, data := range map[string][]byte{"tls.crt": sc, "tls.key": sk, "ca.crt": ca.PEM} {
		writeFile(t, filepath.Join(dir, name), data)
	}
	cfg := fmt.Sprintf(`listen:
  tls:
    grpc: {cert_file: %[1]s/tls.crt, key_file: %[1]s/tls.key, client_ca_file: %[1]s/ca.crt, require_client_cert: true}
    zipkin: {cert_file: %[1]s/tls.crt, key_file: %[1]s/tls.key}
receivers:
  envoy_als:
    allowed_spiffe_ids: ["spiffe://cluster.local/ns/default/sa/bookinfo-*"]
`, dir)
	writeFile(t, filepath.Join(dir, "meshlens.yaml"), []byte(cfg))
	in := start(t, filepath.Join(dir, "data"), "--config", filepath.Join(dir, "meshlens.yaml"), fastFlush)
	if !strings.Contains(in.logs(), "mutual tls") {
		t.Errorf("the start-up log does not say the gRPC listener is mutual TLS")
	}
	ctx := ctxTimeout(t, time.Minute)

	sendOne := func(creds credentials.TransportCredentials, app string) error {
		conn, err := grpc.NewClient(in.addrs["grpc"], grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		s, err := alsClient(ctx, conn, node(app+"-v1-x", app, "v1", productpageIP))
		if err != nil {
			return err
		}
		var errSend error
		for i := 0; i < 10 && errSend == nil; i++ {
			errSend = s.send(httpEntry(time.Now(), time.Millisecond, 200,
				"outbound|9080||reviews.default.svc.cluster.local", reviewsIP, "127.0.0.6", productpageIP))
		}
		return s.close()
	}
	okC, okK := ca.Issue(t, "productpage", "spiffe://cluster.local/ns/default/sa/bookinfo-productpage")
	if err := sendOne(credentials.NewTLS(ca.ClientTLS(t, okC, okK)), "tlsallowed"); err != nil {
		t.Fatalf("allowed sidecar refused: %v", err)
	}
	badC, badK := ca.Issue(t, "intruder", "spiffe://cluster.local/ns/default/sa/intruder")
	if err := sendOne(credentials.NewTLS(ca.ClientTLS(t, badC, badK)), "tlsdenied"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("SPIFFE ID not on the allow-list: %v, want PERMISSION_DENIED", err)
	}
	if err := sendOne(insecure.NewCredentials(), "plaintext"); err == nil {
		t.Errorf("a plain-text client was served on the mutual-TLS port")
	}
	got := in.query(`sum by (source_canonical_service) (istio_requests_total{reporter="source"})`)
	counts := map[string]float64{}
	for _, s := range got {
		counts[s.Metric["source_canonical_service"]] = s.float(t)
	}
	if counts["tlsallowed"] != 10 || counts["tlsdenied"] != 0 || counts["plaintext"] != 0 {
		t.Errorf("stored counts %v, want only tlsallowed=10", counts)
	}

	// Zipkin over HTTPS (server TLS only).
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientTLS(t, nil, nil)}, Timeout: 10 * time.Second}
	body := `[{"traceId":"00000000000000000000000000e2e715","id":"00000000000000e1","name":"get","timestamp":` +
		fmt.Sprint(time.Now().UnixMicro()) + `,"duration":10,"localEndpoint":{"serviceName":"tlszipkin"}}]`
	resp, err := hc.Post("https://"+in.addrs["zipkin"]+"/api/v2/spans", "application/json", bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatalf("zipkin over https: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("zipkin over https answered %d, want 202", resp.StatusCode)
	}
	// Plain HTTP to the TLS port is not served (Go's TLS server answers 400).
	if resp, err := http.Post("http://"+in.addrs["zipkin"]+"/api/v2/spans", "application/json", strings.NewReader(body)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			t.Errorf("plain HTTP spans accepted on the TLS port")
		}
	}
}

// TestQueryAPIBearerTokens runs the binary with a tokens file: probes stay
// open, queries and /metrics need a read token, span ingest on the query
// port a write token, and every answer carries nosniff.
func TestQueryAPIBearerTokens(t *testing.T) {
	dir := t.TempDir()
	const reader, writer = "e2e-reader-token-0123456789", "e2e-writer-token-0123456789"
	tokens := filepath.Join(dir, "tokens.yaml")
	writeFile(t, tokens, []byte("- {token: "+reader+", permissions: [read], name: grafana}\n- {token: "+writer+", permissions: [write], name: forwarder}\n"))
	in := start(t, filepath.Join(dir, "data"), "--auth.tokens_file="+tokens)
	do := func(method, path, token, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, in.url(path), strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	span := `[{"traceId":"0000000000000000000000000000a0f1","id":"00000000000000a1","name":"get","timestamp":` +
		fmt.Sprint(time.Now().UnixMicro()) + `,"duration":10,"localEndpoint":{"serviceName":"authzipkin"}}]`
	for _, c := range []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/healthz", "", "", 200},
		{"GET", "/readyz", "", "", 200},
		{"GET", "/api/v1/query?query=up", "", "", 401},
		{"GET", "/api/v1/query?query=up", "not-a-valid-token-at-all", "", 401},
		{"GET", "/api/v1/query?query=up", reader, "", 200},
		{"GET", "/metrics", "", "", 401},
		{"GET", "/metrics", reader, "", 200},
		{"GET", "/", "", "", 200},             // the UI shell holds no data; it asks for a token
		{"GET", "/ui/js/api.js", "", "", 200}, // its assets
		{"POST", "/api/v2/spans", reader, span, 403},
		{"POST", "/api/v2/spans", writer, span, 202},
		{"GET", "/api/services", writer, "", 403},
	} {
		resp := do(c.method, c.path, c.token, c.body)
		if resp.StatusCode != c.want {
			t.Errorf("%s %s (token %q): %d, want %d", c.method, c.path, c.token, resp.StatusCode, c.want)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: no X-Content-Type-Options: nosniff", c.method, c.path)
		}
	}
	// The UI keeps its own headers with auth on.
	resp := do("GET", "/", reader, "")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
		resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("UI headers: CSP %q, X-Frame-Options %q", csp, resp.Header.Get("X-Frame-Options"))
	}
	if strings.Contains(in.logs(), reader) || strings.Contains(in.logs(), writer) {
		t.Errorf("a token appears in the log")
	}
}

// TestQueryMaxSeries: a query touching more series than query.max_series
// fails at once with an error naming the limit; a narrower one is served.
func TestQueryMaxSeries(t *testing.T) {
	in := start(t, t.TempDir(), "--query.max_series=3")
	ctx := ctxTimeout(t, time.Minute)
	sendBookinfoHop(t, ctx, in.addrs["grpc"], 20) // dozens of series
	resp, err := http.PostForm(in.url("/api/v1/query"), url.Values{"query": {`count({__name__=~"istio_.*"})`}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 400 || !strings.Contains(buf.String(), "query.max_series") {
		t.Errorf("query over the series cap: %d %s, want an error naming query.max_series", resp.StatusCode, buf.String())
	}
	if v := in.scalar(`sum(istio_requests_total{reporter="destination",response_code="200"})`); v != 18 {
		t.Errorf("a query within the cap: %v, want 18", v)
	}
}
