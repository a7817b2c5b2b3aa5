package tenancy

import (
	"context"
	"encoding/json"
	"net/http"
)

// TenantsPath answers which header carries the tenant and which tenants the
// request's credential may name. It needs no tenant itself: a client asks
// it before it knows one (the UI, to offer a choice).
const TenantsPath = "/api/meshlens/v1/tenants"

// TenantsAnswer is the body of TenantsPath.
type TenantsAnswer struct {
	// Header is the header to send the tenant id in.
	Header string `json:"header"`
	// Tenants are the tenants the credential is bound to; empty when it is
	// bound to none (or auth is off), meaning it may name any. The list of
	// every tenant with data is not given: it would tell anyone who may
	// read which other tenants exist.
	Tenants []string `json:"tenants"`
}

// TenantsHandler serves TenantsPath. bound returns the tenants the
// credential that authenticated the request of ctx is bound to (nil: any);
// authentication must run before it.
func (t *Tenancy) TenantsHandler(bound func(ctx context.Context) []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			t.writeError(w, http.StatusMethodNotAllowed, "use GET")
			return
		}
		ans := TenantsAnswer{Header: t.cfg.Header, Tenants: bound(r.Context())}
		if ans.Tenants == nil {
			ans.Tenants = []string{}
		}
		b, _ := json.Marshal(ans)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
	})
}

// Serve is Middleware that also answers TenantsPath, ahead of it.
func (t *Tenancy) Serve(next http.Handler, rule Rule, bound func(ctx context.Context) []string) http.Handler {
	mw := t.Middleware(next, rule)
	list := t.TenantsHandler(bound)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == TenantsPath {
			list.ServeHTTP(w, r)
			return
		}
		mw.ServeHTTP(w, r)
	})
}
