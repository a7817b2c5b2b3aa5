// Package ui serves meshlens's embedded web UI: a single-page application
// made of plain ES modules, one stylesheet and hand-written SVG, with no
// build step, so `go build` alone produces a binary with a working UI.
//
// The UI reads only the public HTTP APIs on the same port (Prometheus,
// Jaeger, topology, recommendations, errors), so what it shows is exactly
// what any other client of those APIs would see.
package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed assets
var assets embed.FS

// ContentSecurityPolicy is sent with every UI response. It forbids inline
// scripts and styles, so markup injected through data cannot run.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// AssetPrefix is the URL path under which static assets are served.
const AssetPrefix = "/ui/"

// file is one embedded asset with its precomputed validator.
type file struct {
	body        []byte
	contentType string
	etag        string
}

// handler serves the SPA shell and the assets.
type handler struct {
	files map[string]file // by path relative to assets/, e.g. "js/main.js"
}

// Handler returns the UI: the application shell at "/" and the static
// assets under /ui/. Any other path is 404, so unknown API paths never
// answer with HTML.
func Handler() http.Handler {
	h := &handler{files: map[string]file{}}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	_ = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		h.files[p] = file{body: b, contentType: contentType(p), etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	return h
}

// Register installs the UI on mux: "GET /{$}" (the shell) and "GET /ui/"
// (assets). More specific API patterns on the same mux keep precedence.
func Register(mux *http.ServeMux) {
	h := Handler()
	mux.Handle("GET /{$}", h)
	mux.Handle("GET "+AssetPrefix, h)
}

func contentType(p string) string {
	switch path.Ext(p) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".json":
		return "application/json"
	case ".png":
		return "image/png"
	case ".ico":
		return "image/x-icon"
	case ".txt", ".md":
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")

	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var name string
	switch {
	case r.URL.Path == "/" || r.URL.Path == "/index.html":
		name = "index.html"
	case strings.HasPrefix(r.URL.Path, AssetPrefix):
		name = strings.TrimPrefix(r.URL.Path, AssetPrefix)
	}
	f, ok := h.files[name]
	if name == "" || !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	// Asset names carry no content hash (there is no build step), so
	// browsers revalidate every time and get a cheap 304 when unchanged.
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", f.etag)
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatch(match, f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hd.Set("Content-Type", f.contentType)
	hd.Set("Content-Length", strconv.Itoa(len(f.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(f.body)
	}
}

func etagMatch(header, etag string) bool {
	for _, part := range strings.Split(header, ",") {
		part = strings.TrimSpace(part)
		if part == "*" || strings.TrimPrefix(part, "W/") == etag {
			return true
		}
	}
	return false
}
