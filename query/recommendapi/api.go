// Package recommendapi serves the recommendation engine's results at
// /api/meshlens/v1/recommendations: JSON per service and edge with
// explanations, ready-to-apply Istio YAML, a diff against the
// configuration in force, and the history of changes.
package recommendapi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/meshlens/meshlens/processors/recommend"
)

// Source is what the API reads; *recommend.Engine implements it.
type Source interface {
	Recommendations(f recommend.Filter) []recommend.Recommendation
	History(f recommend.Filter, limit int) []recommend.Change
	IstioYAML(f recommend.Filter) ([]byte, error)
	Diff(f recommend.Filter) []recommend.DiffEntry
	LastRecompute() time.Time
}

// API serves recommendations from a Source.
type API struct {
	src Source
	log *slog.Logger
}

// New returns an API over src. log may be nil.
func New(src Source, log *slog.Logger) *API {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &API{src: src, log: log}
}

// Base is the path prefix of every route.
const Base = "/api/meshlens/v1/recommendations"

// maxHistory bounds the history a request may ask for.
const maxHistory = 1000

// Register adds the routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+Base, a.list)
	mux.HandleFunc("GET "+Base+"/istio.yaml", a.yaml)
	mux.HandleFunc("GET "+Base+"/diff", a.diff)
	mux.HandleFunc("GET "+Base+"/history", a.history)
}

// Response is the body of the list endpoint.
type Response struct {
	GeneratedAt     time.Time                  `json:"generated_at"`
	Count           int                        `json:"count"`
	Recommendations []recommend.Recommendation `json:"recommendations"`
}

func filter(r *http.Request) (recommend.Filter, error) {
	q := r.URL.Query()
	f := recommend.Filter{Service: q.Get("service"), Kind: recommend.Kind(q.Get("kind"))}
	switch f.Kind {
	case "", recommend.KindTimeout, recommend.KindRetry, recommend.KindRateLimit, recommend.KindChain, recommend.KindMisconfig:
	default:
		return f, fmt.Errorf("kind %q: want one of timeout, retry, ratelimit, chain, misconfig", f.Kind)
	}
	if len(f.Service) > 512 {
		return f, fmt.Errorf("service: %d characters exceeds the 512 limit", len(f.Service))
	}
	return f, nil
}

type errorBody struct {
	Error string `json:"error"`
}

func (a *API) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		a.log.Debug("recommendations: write response", "err", err)
	}
}

func (a *API) bad(w http.ResponseWriter, err error) {
	a.writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error()})
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	f, err := filter(r)
	if err != nil {
		a.bad(w, err)
		return
	}
	recs := a.src.Recommendations(f)
	a.writeJSON(w, http.StatusOK, Response{GeneratedAt: a.src.LastRecompute(), Count: len(recs), Recommendations: recs})
}

func (a *API) yaml(w http.ResponseWriter, r *http.Request) {
	f, err := filter(r)
	if err != nil {
		a.bad(w, err)
		return
	}
	b, err := a.src.IstioYAML(f)
	if err != nil {
		a.log.Error("recommendations: render Istio YAML", "err", err)
		a.writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(b)
}

func (a *API) diff(w http.ResponseWriter, r *http.Request) {
	f, err := filter(r)
	if err != nil {
		a.bad(w, err)
		return
	}
	d := a.src.Diff(f)
	switch r.URL.Query().Get("format") {
	case "", "json":
		a.writeJSON(w, http.StatusOK, map[string]any{"count": len(d), "changes": d})
	case "text":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(recommend.FormatDiff(d)))
	default:
		a.bad(w, fmt.Errorf("format %q: want json or text", r.URL.Query().Get("format")))
	}
}

func (a *API) history(w http.ResponseWriter, r *http.Request) {
	f, err := filter(r)
	if err != nil {
		a.bad(w, err)
		return
	}
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 || n > maxHistory {
			a.bad(w, fmt.Errorf("limit %q: want an integer from 1 to %d", s, maxHistory))
			return
		}
		limit = n
	}
	h := a.src.History(f, limit)
	a.writeJSON(w, http.StatusOK, map[string]any{"count": len(h), "changes": h})
}
