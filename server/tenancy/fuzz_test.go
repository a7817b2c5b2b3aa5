package tenancy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzTenantHeader: whatever the header holds, the middleware answers 401,
// 400 or passes on an id that is safe as a label value and a path segment.
func FuzzTenantHeader(f *testing.F) {
	for _, s := range []string{"team-a", "", " ", ".", "..", "a/b", "a|b", strings.Repeat("x", 151), "é", "a\x00b", "../../etc"} {
		f.Add(s)
	}
	tn, err := New(Config{Enabled: true, Header: DefaultHeader})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v string) {
		var got string
		h := tn.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			got, _ = FromContext(r.Context())
		}), HTTPRule)
		r := httptest.NewRequest("GET", "/api/v1/query", nil)
		r.Header["X-Scope-Orgid"] = []string{v}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case 200:
			if got == "" || len(got) > MaxIDLength || got == "." || got == ".." || strings.ContainsAny(got, "/\\\x00 |") {
				t.Fatalf("accepted unsafe tenant %q from %q", got, v)
			}
		case 400, 401:
		default:
			t.Fatalf("header %q: status %d", v, w.Code)
		}
	})
}
