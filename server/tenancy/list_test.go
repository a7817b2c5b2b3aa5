package tenancy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestServeTenants: TenantsPath answers without a tenant, with the header
// name and the credential's tenants; every other API path still needs the
// tenant.
func TestServeTenants(t *testing.T) {
	tn, err := New(Config{Enabled: true, Header: "X-Tenant"})
	if err != nil {
		t.Fatal(err)
	}
	bound := func(ctx context.Context) []string {
		if v, _ := ctx.Value(testBoundKey{}).(string); v != "" {
			return strings.Split(v, ",")
		}
		return nil
	}
	h := tn.Serve(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("next")) }), HTTPRule, bound)
	for _, tc := range []struct {
		name, method, path, bound string
		code                      int
		tenants                   string // comma-joined; "-" = not a TenantsAnswer
	}{
		{"unbound credential", "GET", TenantsPath, "", 200, ""},
		{"bound credential", "GET", TenantsPath, "team-a,team-c", 200, "team-a,team-c"},
		{"other API needs a tenant", "GET", "/api/services", "team-a", 401, "-"},
		{"POST refused", "POST", TenantsPath, "", 405, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, nil)
			r = r.WithContext(context.WithValue(r.Context(), testBoundKey{}, tc.bound))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.code {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, tc.code)
			}
			if tc.tenants == "-" {
				return
			}
			var ans TenantsAnswer
			if err := json.Unmarshal(w.Body.Bytes(), &ans); err != nil {
				t.Fatal(err)
			}
			if ans.Header != "X-Tenant" || ans.Tenants == nil || strings.Join(ans.Tenants, ",") != tc.tenants {
				t.Errorf("answer %+v (%s), want header X-Tenant and tenants %q", ans, w.Body, tc.tenants)
			}
		})
	}
}

type testBoundKey struct{}
