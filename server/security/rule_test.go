package security

import (
	"net/http/httptest"
	"testing"
)

func TestQueryPortRule(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		want         Permission
	}{
		{"GET", "/healthz", 0},
		{"GET", "/", 0},             // UI shell: no data, must load to ask for a token
		{"GET", "/ui/js/api.js", 0}, // UI assets
		{"HEAD", "/ui/app.css", 0},
		{"POST", "/", PermRead},
		{"GET", "/uix", PermRead},
		{"GET", "/api/v1/query", PermRead},
		{"GET", "/api/traces", PermRead},
		{"GET", "/metrics", PermRead},
		{"POST", "/api/v2/spans", PermWrite},
	} {
		if got := QueryPortRule(httptest.NewRequest(tc.method, tc.path, nil)); got != tc.want {
			t.Errorf("%s %s: %v, want %v", tc.method, tc.path, got, tc.want)
		}
	}
}
