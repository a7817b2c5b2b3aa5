package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUIBearerToken: with auth on, the UI shell loads without a token,
// the first API answer (401) shows a token prompt, the token entered is
// kept in sessionStorage and sent as Authorization: Bearer on every
// request, so the page then renders; a refused token prompts again. No
// CSP violation on the way.
func TestUIBearerToken(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts the meshlens binary and chromium")
	}
	b := newBrowser(t, 90*time.Second)
	dir := t.TempDir()
	const reader = "e2e-ui-reader-token-0123456789"
	tokens := filepath.Join(dir, "tokens.yaml")
	writeFile(t, tokens, []byte("- {token: "+reader+", permissions: [read], name: ui}\n"))
	in := start(t, filepath.Join(dir, "data"), "--auth.tokens_file="+tokens)

	b.navigate(t, in.url("/#/topology"))
	b.waitJS(t, "token prompt", `document.querySelector('form.token-form input#token')`, 20*time.Second)
	if txt := evalJS[string](t, b, `document.querySelector('main').innerText`); !strings.Contains(txt, "requires a bearer token") {
		t.Fatalf("prompt text %q", txt)
	}
	evalJS[bool](t, b, `(() => { document.getElementById('token').value = '`+reader+`'; document.querySelector('form.token-form').requestSubmit(); return true; })()`)
	b.waitJS(t, "topology after the token", `!document.querySelector('.state.auth') && !document.querySelector('.state.loading') && document.querySelector('main h1, main svg, main .state.empty')`, 30*time.Second)
	if got := evalJS[string](t, b, `sessionStorage.getItem('meshlens.token') || ''`); got != reader {
		t.Fatalf("sessionStorage token %q, want the one entered", got)
	}
	if txt := evalJS[string](t, b, `document.querySelector('main').innerText`); strings.Contains(txt, "HTTP 401") {
		t.Fatalf("still refused after the token: %q", txt)
	}

	// A token the server refuses: the prompt comes back and says so.
	evalJS[bool](t, b, `(() => { sessionStorage.setItem('meshlens.token', 'not-a-valid-token'); location.hash = '#/traces'; return true; })()`)
	b.waitJS(t, "prompt for a refused token", `document.querySelector('.state.auth') && document.querySelector('main').innerText.includes('refused the token')`, 20*time.Second)
	b.checkConsole(t)
}
