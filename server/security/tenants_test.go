package security

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestTokensBoundToTenants: a static token or JWT that lists tenants may
// name only those; one that lists none may name any.
func TestTokensBoundToTenants(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	const bound, free = "bound-token-0123456789", "free-token-01234567890"
	if err := os.WriteFile(tokens, []byte("- {token: "+bound+", permissions: [read], name: team-a-grafana, tenants: [team-a, team-c]}\n- {token: "+free+", permissions: [read], name: ops}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwks, jwksOf(map[string]*ecdsa.PrivateKey{"k1": key}), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := NewAuthenticator(AuthConfig{TokensFile: tokens, JWKSFile: jwks, PermissionsClaim: "scope"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	jwtB := sign(t, key, "k1", jwt.MapClaims{"sub": "b-user", "scope": "read", "exp": exp, TenantsClaim: []any{"team-b"}})
	jwtFree := sign(t, key, "k1", jwt.MapClaims{"sub": "admin", "scope": "read", "exp": exp})

	// The handler asks TenantAllowed for the tenant in the header, as the
	// tenancy middleware does.
	srv := httptest.NewServer(a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := TenantAllowed(r.Context(), r.Header.Get("X-Scope-OrgID")); err != nil {
			if !errors.Is(err, ErrTenantDenied) {
				t.Errorf("error %v is not ErrTenantDenied", err)
			}
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, err.Error())
		}
	}), QueryPortRule))
	defer srv.Close()
	for _, c := range []struct {
		token, tenant string
		want          int
	}{
		{bound, "team-a", 200},
		{bound, "team-c", 200},
		{bound, "team-b", 403},
		{free, "team-b", 200},
		{jwtB, "team-b", 200},
		{jwtB, "team-a", 403},
		{jwtFree, "team-a", 200},
	} {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/query", nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		req.Header.Set("X-Scope-OrgID", c.tenant)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("token %.12s… as %s: %d, want %d", c.token, c.tenant, resp.StatusCode, c.want)
		}
	}
	// Without auth nothing is bound.
	if err := TenantAllowed(context.Background(), "anyone"); err != nil {
		t.Errorf("no credential: %v", err)
	}
	// An invalid tenant in the tokens file stops loading it, naming the entry.
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("- {token: "+bound+", permissions: [read], name: broken, tenants: [a/b]}\n"), 0o600)
	if _, err := NewAuthenticator(AuthConfig{TokensFile: bad, PermissionsClaim: "scope"}, nil); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Errorf("invalid tenant in tokens file: %v", err)
	}
}

// TestBoundTenants: BoundTenants lists a bound credential's tenants and
// nothing for an unbound one, through the real middleware.
func TestBoundTenants(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	const bound, free = "bound-token-0123456789", "free-token-01234567890"
	if err := os.WriteFile(tokens, []byte("- {token: "+bound+", permissions: [read], name: a, tenants: [team-a, team-c]}\n- {token: "+free+", permissions: [read], name: ops}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := NewAuthenticator(AuthConfig{TokensFile: tokens, PermissionsClaim: "scope"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	h := a.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = BoundTenants(r.Context()) }), QueryPortRule)
	for _, c := range []struct {
		token string
		want  string
	}{
		{bound, "team-a,team-c"},
		{free, ""},
	} {
		got = nil
		r := httptest.NewRequest("GET", "/api/meshlens/v1/tenants", nil)
		r.Header.Set("Authorization", "Bearer "+c.token)
		h.ServeHTTP(httptest.NewRecorder(), r)
		if s := strings.Join(got, ","); s != c.want {
			t.Errorf("token %s…: bound tenants %q, want %q", c.token[:5], s, c.want)
		}
	}
	if BoundTenants(context.Background()) != nil {
		t.Error("a context without auth names tenants")
	}
}
