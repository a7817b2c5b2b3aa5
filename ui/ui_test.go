package ui

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestServe(t *testing.T) {
	mux := http.NewServeMux()
	Register(mux)
	mux.HandleFunc("GET /api/v1/query", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("api")) })

	for _, tc := range []struct {
		path, wantType string
		wantStatus     int
		wantBody       string
	}{
		{"/", "text/html; charset=utf-8", 200, `<script type="module" src="/ui/js/main.js">`},
		{"/ui/app.css", "text/css; charset=utf-8", 200, ":root"},
		{"/ui/js/main.js", "text/javascript; charset=utf-8", 200, "import"},
		{"/ui/favicon.svg", "image/svg+xml", 200, "<svg"},
		{"/ui/js/nope.js", "", 404, ""},
		{"/ui/", "", 404, ""},
		{"/api/v1/query", "", 200, "api"},
		{"/nothing", "", 404, ""},
	} {
		rec := get(t, mux, "GET", tc.path, nil)
		if rec.Code != tc.wantStatus {
			t.Errorf("%s: status %d, want %d", tc.path, rec.Code, tc.wantStatus)
			continue
		}
		if tc.wantType != "" && rec.Header().Get("Content-Type") != tc.wantType {
			t.Errorf("%s: Content-Type %q, want %q", tc.path, rec.Header().Get("Content-Type"), tc.wantType)
		}
		if !strings.Contains(rec.Body.String(), tc.wantBody) {
			t.Errorf("%s: body lacks %q", tc.path, tc.wantBody)
		}
		if tc.wantStatus == 200 && tc.path != "/api/v1/query" {
			for k, want := range map[string]string{
				"Content-Security-Policy": ContentSecurityPolicy,
				"X-Content-Type-Options":  "nosniff",
				"X-Frame-Options":         "DENY",
				"Referrer-Policy":         "no-referrer",
				"Cache-Control":           "no-cache",
			} {
				if got := rec.Header().Get(k); got != want {
					t.Errorf("%s: %s = %q, want %q", tc.path, k, got, want)
				}
			}
		}
	}
}

func TestCSPForbidsInline(t *testing.T) {
	for _, directive := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(ContentSecurityPolicy, directive+";") && !strings.HasSuffix(ContentSecurityPolicy, directive) {
			t.Errorf("CSP lacks %q", directive)
		}
	}
	if strings.Contains(ContentSecurityPolicy, "unsafe") {
		t.Errorf("CSP allows unsafe sources: %s", ContentSecurityPolicy)
	}
}

func TestETag(t *testing.T) {
	h := Handler()
	first := get(t, h, "GET", "/ui/app.css", nil)
	etag := first.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if rec := get(t, h, "GET", "/ui/app.css", map[string]string{"If-None-Match": etag}); rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Errorf("If-None-Match: status %d, %d bytes", rec.Code, rec.Body.Len())
	}
	if rec := get(t, h, "GET", "/ui/app.css", map[string]string{"If-None-Match": `"other"`}); rec.Code != 200 {
		t.Errorf("stale ETag: status %d", rec.Code)
	}
	if rec := get(t, h, "HEAD", "/", nil); rec.Code != 200 || rec.Body.Len() != 0 {
		t.Errorf("HEAD: status %d, %d bytes", rec.Code, rec.Body.Len())
	}
	if rec := get(t, h, "POST", "/", nil); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d", rec.Code)
	}
}

// TestAssetsAreSafe guards the rules the CSP and the escaping rely on: no
// HTML parsing of strings, no inline handlers or styles, no external URLs,
// and every module import resolves to an embedded file.
func TestAssetsAreSafe(t *testing.T) {
	forbidden := []*regexp.Regexp{
		regexp.MustCompile(`\.innerHTML\b|\.outerHTML\b|insertAdjacentHTML|document\.write|\beval\(|new Function\(`),
		regexp.MustCompile(`setAttribute\(\s*['"](style|on\w+)['"]`),
		regexp.MustCompile(`https?://|//cdn|@import`), // nothing from a network (the SVG namespace line is allowed below)
	}
	importRE := regexp.MustCompile(`(?m)^import .* from '\./([^']+)';$`)
	sub, _ := fs.Sub(assets, "assets")
	err := fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(sub, p)
		src := string(b)
		if strings.HasSuffix(p, ".html") {
			if regexp.MustCompile(`<script(?:[^>]*)>\s*[^<\s]|\sstyle=|\son\w+=`).MatchString(src) {
				t.Errorf("%s: inline script, style or handler", p)
			}
			return nil
		}
		if !strings.HasSuffix(p, ".js") {
			return nil
		}
		for _, re := range forbidden {
			for _, line := range strings.Split(src, "\n") {
				if re.MatchString(line) && !strings.Contains(line, "http://www.w3.org/2000/svg") {
					t.Errorf("%s: forbidden construct %q in: %s", p, re, strings.TrimSpace(line))
				}
			}
		}
		for _, m := range importRE.FindAllStringSubmatch(src, -1) {
			if _, err := fs.Stat(sub, "js/"+m[1]); err != nil {
				t.Errorf("%s imports %s, which is not embedded", p, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
