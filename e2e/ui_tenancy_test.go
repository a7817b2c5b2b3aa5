package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// uiGraphNodes is the JavaScript list of the topology's node names.
const uiGraphNodes = `[...document.querySelectorAll('svg.graph .node')].map((n) => n.dataset.name)`

// uiServiceOptions is the JavaScript list of the trace search's services.
const uiServiceOptions = `[...document.querySelectorAll('select[name=service] option')].map((o) => o.value).filter(Boolean)`

// TestUITenancy: with multi_tenancy on, the UI's first API answer (401
// for want of a tenant) shows a tenant prompt; the tenant entered is kept
// in localStorage, shown in the header bar and sent on every request, so
// the topology and the trace search show that tenant's services and no
// other's; "Switch tenant" shows the other tenant's. With multi_tenancy
// off nothing of this appears.
func TestUITenancy(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts the meshlens binary and chromium")
	}
	b := newBrowser(t, 90*time.Second)
	in := start(t, t.TempDir(), fastFlush, "--multi_tenancy.enabled=true")
	for tenant, trace := range map[string]string{"team-a": "000000000000000000000000000a0a01", "team-b": "000000000000000000000000000b0b01"} {
		sfx := tenant[len(tenant)-2:] // "-a", "-b"
		if code, body := tenantPostZipkin(t, in, tenant, tenantZipkinShop(trace, "shop"+sfx, "cart"+sfx)); code/100 != 2 {
			t.Fatalf("zipkin as %s: %d %s", tenant, code, body)
		}
	}
	// The span metrics behind the topology are flushed every 500ms.
	for _, tenant := range []string{"team-a", "team-b"} {
		eventually(t, 20*time.Second, tenant+" topology", func() (bool, string) {
			code, body := tenantGet(t, in, tenant, "/api/meshlens/v1/topology")
			return code == 200 && strings.Contains(body, "cart"+tenant[len(tenant)-2:]), fmt.Sprintf("%d %.300s", code, body)
		})
	}

	// showsOnly waits until the topology and then the trace search list
	// want's services, and checks they list none of other's.
	showsOnly := func(want, other string) {
		t.Helper()
		b.navigate(t, in.url("/#/topology"))
		b.waitJS(t, "topology of "+want, uiGraphNodes+`.includes('cart`+want+`')`, 15*time.Second)
		if nodes := evalJS[[]string](t, b, uiGraphNodes); strings.Contains(strings.Join(nodes, ","), other) {
			t.Errorf("topology as tenant%s shows nodes %v of tenant%s", want, nodes, other)
		}
		b.navigate(t, in.url("/#/traces"))
		b.waitJS(t, "services of "+want, uiServiceOptions+`.includes('shop`+want+`')`, 15*time.Second)
		if svcs := evalJS[[]string](t, b, uiServiceOptions); strings.Contains(strings.Join(svcs, ","), other) {
			t.Errorf("trace search as tenant%s lists services %v of tenant%s", want, svcs, other)
		}
		if txt := evalJS[string](t, b, `document.querySelector('main').innerText`); strings.Contains(txt, "HTTP 4") {
			t.Errorf("a request was refused as tenant%s: %q", want, txt)
		}
	}
	// enterTenant fills the tenant prompt's text field and submits it.
	enterTenant := func(id string) {
		t.Helper()
		b.waitJS(t, "tenant prompt", `document.querySelector('form.tenant-form input#tenant')`, 15*time.Second)
		evalJS[bool](t, b, `(() => { document.getElementById('tenant').value = '`+id+`'; document.querySelector('form.tenant-form').requestSubmit(); return true; })()`)
		b.waitJS(t, "tenant "+id+" in the header bar", `!document.getElementById('tenant-bar').hidden && document.getElementById('tenant-current').textContent === '`+id+`'`, 5*time.Second)
	}

	b.navigate(t, in.url("/#/topology"))
	b.waitJS(t, "tenant prompt", `document.querySelector('form.tenant-form input#tenant')`, 15*time.Second)
	if txt := evalJS[string](t, b, `document.querySelector('main').innerText`); !strings.Contains(txt, "X-Scope-OrgID") {
		t.Errorf("prompt text %q does not name the header", txt)
	}
	// An id the server would refuse is refused in the page.
	evalJS[bool](t, b, `(() => { document.getElementById('tenant').value = 'team/a'; document.querySelector('form.tenant-form').requestSubmit(); return true; })()`)
	b.waitJS(t, "invalid tenant refused", `document.querySelector('form.tenant-form .form-error').textContent.includes('1–150')`, 5*time.Second)

	enterTenant("team-a")
	if got := evalJS[string](t, b, `localStorage.getItem('meshlens.tenant') || ''`); got != "team-a" {
		t.Fatalf("localStorage tenant %q, want team-a", got)
	}
	showsOnly("-a", "-b")
	b.screenshot(t, artifactDir(t), "traces-team-a")

	b.click(t, "#tenant-switch")
	enterTenant("team-b")
	showsOnly("-b", "-a")

	// Remembered: a reload asks nothing.
	b.navigate(t, in.url("/#/topology"))
	b.waitJS(t, "topology of team-b after a reload", uiGraphNodes+`.includes('cart-b')`, 15*time.Second)
	if evalJS[bool](t, b, `!!document.querySelector('.state.auth')`) {
		t.Error("a prompt after a reload with a remembered tenant")
	}
	b.checkConsole(t)

	// Multi-tenancy off: no prompt, no tenant in the header bar.
	off := start(t, t.TempDir(), fastFlush)
	b.navigate(t, off.url("/#/traces"))
	b.waitJS(t, "trace search without tenancy", `document.querySelector('select[name=service]') && !document.querySelector('.state.loading')`, 15*time.Second)
	time.Sleep(500 * time.Millisecond) // the tenancy question at start-up has answered
	if evalJS[bool](t, b, `!!document.querySelector('.state.auth') || !document.getElementById('tenant-bar').hidden`) {
		t.Errorf("tenant prompt or bar with multi-tenancy off: %q", evalJS[string](t, b, `document.body.innerText`))
	}
	b.checkConsole(t)
}

// TestUITenantList: a token bound to tenants gets a list of them in the
// tenant prompt (GET /api/meshlens/v1/tenants), after the token prompt.
func TestUITenantList(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts the meshlens binary and chromium")
	}
	b := newBrowser(t, 60*time.Second)
	dir := t.TempDir()
	const reader = "e2e-ui-tenant-reader-0123456789"
	tokens := filepath.Join(dir, "tokens.yaml")
	writeFile(t, tokens, []byte("- {token: "+reader+", permissions: [read], name: ui, tenants: [team-c, team-d]}\n"))
	in := start(t, filepath.Join(dir, "data"), "--auth.tokens_file="+tokens, "--multi_tenancy.enabled=true")

	b.navigate(t, in.url("/#/traces"))
	b.waitJS(t, "token prompt", `document.querySelector('form.token-form input#token')`, 15*time.Second)
	evalJS[bool](t, b, `(() => { document.getElementById('token').value = '`+reader+`'; document.querySelector('form.token-form').requestSubmit(); return true; })()`)
	b.waitJS(t, "tenant list", `document.querySelectorAll('form.tenant-form select#tenant option').length === 2`, 15*time.Second)
	if got := evalJS[[]string](t, b, `[...document.querySelectorAll('select#tenant option')].map((o) => o.value)`); strings.Join(got, ",") != "team-c,team-d" {
		t.Fatalf("tenant list %v, want the token's team-c, team-d", got)
	}
	evalJS[bool](t, b, `(() => { document.getElementById('tenant').value = 'team-d'; document.querySelector('form.tenant-form').requestSubmit(); return true; })()`)
	b.waitJS(t, "trace search as team-d", `document.getElementById('tenant-current').textContent === 'team-d' && document.querySelector('select[name=service]') && !document.querySelector('.state.auth') && !document.querySelector('.state.loading')`, 15*time.Second)
	if txt := evalJS[string](t, b, `document.querySelector('main').innerText`); strings.Contains(txt, "HTTP 4") {
		t.Errorf("refused as team-d: %q", txt)
	}
	b.checkConsole(t)
}
