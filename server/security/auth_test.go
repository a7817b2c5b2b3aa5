package security

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func jwksOf(keys map[string]*ecdsa.PrivateKey) []byte {
	var out []map[string]string
	for kid, k := range keys {
		out = append(out, map[string]string{
			"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
			"x": base64.RawURLEncoding.EncodeToString(k.X.FillBytes(make([]byte, 32))),
			"y": base64.RawURLEncoding.EncodeToString(k.Y.FillBytes(make([]byte, 32))),
		})
	}
	b, _ := json.Marshal(map[string]any{"keys": out})
	return b
}

func sign(t *testing.T, k *ecdsa.PrivateKey, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func serve(t *testing.T, a *Authenticator, rule Rule) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }), rule))
	t.Cleanup(srv.Close)
	return srv
}

func httpStatus(t *testing.T, method, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader("[]"))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestStaticTokensReadWriteAndReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens.yaml")
	const reader, writer = "reader-token-0123456789", "writer-token-0123456789"
	if err := os.WriteFile(file, []byte("- {token: "+reader+", permissions: [read], name: grafana}\n- {token: "+writer+", permissions: [write], name: forwarder}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := AuthConfig{TokensFile: file, PermissionsClaim: "scope"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := NewAuthenticator(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, a, QueryPortRule)
	for _, c := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/api/v1/query", "", 401},
		{"GET", "/api/v1/query", "wrong-token-0123456789", 401},
		{"GET", "/api/v1/query", reader, 200},
		{"POST", "/api/v1/query", reader, 200}, // Grafana POSTs queries
		{"POST", "/api/v2/spans", reader, 403},
		{"POST", "/api/v2/spans", writer, 200},
		{"GET", "/api/v1/query", writer, 403},
		{"GET", "/metrics", "", 401},
	} {
		if got := httpStatus(t, c.method, srv.URL+c.path, c.token); got != c.want {
			t.Errorf("%s %s with %q: %d, want %d", c.method, c.path, c.token, got, c.want)
		}
	}
	// Revoking a token takes effect without a restart.
	time.Sleep(1100 * time.Millisecond)
	if err := os.WriteFile(file, []byte("- {token: "+writer+", permissions: [read, write], name: forwarder}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(2 * time.Second)
	_ = os.Chtimes(file, future, future)
	if got := httpStatus(t, "GET", srv.URL+"/api/v1/query", reader); got != 401 {
		t.Errorf("revoked token: %d, want 401", got)
	}
	if got := httpStatus(t, "GET", srv.URL+"/api/v1/query", writer); got != 200 {
		t.Errorf("token granted read: %d, want 200", got)
	}
	// A short token is refused at load, naming the entry but not the token.
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("- {token: abc, permissions: [read], name: weak}\n"), 0o600)
	_, err = NewAuthenticator(AuthConfig{TokensFile: bad, PermissionsClaim: "scope"}, nil)
	if err == nil || !strings.Contains(err.Error(), "weak") || strings.Contains(err.Error(), "abc") {
		t.Errorf("short token: %v, want an error naming the entry and not the token", err)
	}
}

func TestJWTAgainstJWKSURLWithKeyRotation(t *testing.T) {
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var mu sync.Mutex
	keys := map[string]*ecdsa.PrivateKey{"k1": k1}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = w.Write(jwksOf(keys))
	}))
	defer jwks.Close()
	cfg := AuthConfig{JWKSURL: jwks.URL, Issuer: "https://idp.example", Audience: "meshlens", PermissionsClaim: "scope"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := NewAuthenticator(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, a, QueryPortRule)
	exp := time.Now().Add(time.Hour).Unix()
	good := jwt.MapClaims{"iss": "https://idp.example", "aud": "meshlens", "sub": "alice", "exp": exp, "scope": "openid meshlens:read"}
	if got := httpStatus(t, "GET", srv.URL+"/api/v1/query", sign(t, k1, "k1", good)); got != 200 {
		t.Errorf("valid JWT: %d, want 200", got)
	}
	if got := httpStatus(t, "POST", srv.URL+"/api/v2/spans", sign(t, k1, "k1", good)); got != 403 {
		t.Errorf("read-only JWT on ingest: %d, want 403", got)
	}
	for name, claims := range map[string]jwt.MapClaims{
		"expired":      {"iss": "https://idp.example", "aud": "meshlens", "exp": time.Now().Add(-time.Hour).Unix(), "scope": "read"},
		"wrong issuer": {"iss": "https://evil.example", "aud": "meshlens", "exp": exp, "scope": "read"},
		"wrong aud":    {"iss": "https://idp.example", "aud": "other", "exp": exp, "scope": "read"},
		"no exp":       {"iss": "https://idp.example", "aud": "meshlens", "scope": "read"},
	} {
		if got := httpStatus(t, "GET", srv.URL+"/api/v1/query", sign(t, k1, "k1", claims)); got != 401 {
			t.Errorf("%s JWT: %d, want 401", name, got)
		}
	}
	// Signed by a key the IdP does not publish.
	if got := httpStatus(t, "GET", srv.URL+"/api/v1/query", sign(t, k2, "k1", good)); got != 401 {
		t.Errorf("forged JWT: %d, want 401", got)
	}
	// The IdP rotates to k2: a token naming the new kid makes the JWKS be
	// fetched again.
	mu.Lock()
	keys["k2"] = k2
	mu.Unlock()
	a.mu.Lock()
	a.keysFetch = time.Time{} // past the 30s rate limit
	a.mu.Unlock()
	if got := httpStatus(t, "GET", srv.URL+"/api/v1/query", sign(t, k2, "k2", good)); got != 200 {
		t.Errorf("JWT signed with the rotated key: %d, want 200", got)
	}
}
