// Package errorapi serves the sampled error log:
//
//	GET /api/meshlens/v1/errors?service=&namespace=&code=&flag=&start=&end=&limit=
//
// service and namespace match either side of a call; code is an HTTP status
// ("503"), a class ("5xx") or a gRPC status ("grpc:14"); flag is one Envoy
// response flag ("UH"); start and end are RFC 3339 or Unix seconds (as the
// Prometheus API takes them); limit defaults to 100 and is capped at 1000.
// The answer is {"records": [...]}, newest first, with each record's time,
// source and destination identity, endpoint, method, path, status, gRPC
// status, response flags, duration, request ID, upstream cluster and
// detect point.
package errorapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/meshlens/meshlens/processors/errorlog"
)

// Source is what the API reads records from; *errorlog.Log implements it.
type Source interface {
	Query(ctx context.Context, f errorlog.Filter) ([]errorlog.Record, error)
}

// Limits of a query.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
	// maxParamLen bounds every query parameter.
	maxParamLen = 512
)

// API serves the error log over HTTP.
type API struct {
	src    Source
	logger *slog.Logger
}

// New returns an API reading from src. logger may be nil.
func New(src Source, logger *slog.Logger) *API {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &API{src: src, logger: logger}
}

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/meshlens/v1/errors", a.errors)
}

type response struct {
	Records []errorlog.Record `json:"records"`
}

type errorResponse struct {
	Error string `json:"error"`
}

func (a *API) errors(w http.ResponseWriter, r *http.Request) {
	f, err := ParseFilter(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: err.Error()})
		return
	}
	recs, err := a.src.Query(r.Context(), f)
	if err != nil {
		a.logger.Warn("error log query failed", "error", err)
		writeJSON(w, http.StatusServiceUnavailable, errorResponse{Error: "query failed: " + err.Error()})
		return
	}
	if recs == nil {
		recs = []errorlog.Record{}
	}
	writeJSON(w, http.StatusOK, response{Records: recs})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

var codeRE = regexp.MustCompile(`^(?:[1-5][0-9]{2}|[1-5]xx|grpc:(?:[0-9]|1[0-6]))$`)

// Values is the subset of url.Values that ParseFilter reads.
type Values interface {
	Get(key string) string
}

// ParseFilter reads and checks the query parameters; the error names the
// parameter at fault.
func ParseFilter(q Values) (errorlog.Filter, error) {
	f := errorlog.Filter{
		Service:   q.Get("service"),
		Namespace: q.Get("namespace"),
		Code:      q.Get("code"),
		Flag:      q.Get("flag"),
		Limit:     DefaultLimit,
	}
	for name, v := range map[string]string{"service": f.Service, "namespace": f.Namespace, "code": f.Code, "flag": f.Flag} {
		if len(v) > maxParamLen {
			return f, fmt.Errorf("%s: longer than %d bytes", name, maxParamLen)
		}
	}
	if f.Code != "" && !codeRE.MatchString(f.Code) {
		return f, fmt.Errorf("code: %q is not an HTTP status (503), a class (5xx) or a gRPC status (grpc:14)", f.Code)
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return f, fmt.Errorf("limit: %q is not a positive integer", s)
		}
		f.Limit = min(n, MaxLimit)
	}
	var err error
	if f.Start, err = parseTime(q.Get("start")); err != nil {
		return f, fmt.Errorf("start: %w", err)
	}
	if f.End, err = parseTime(q.Get("end")); err != nil {
		return f, fmt.Errorf("end: %w", err)
	}
	if !f.Start.IsZero() && !f.End.IsZero() && f.End.Before(f.Start) {
		return f, errors.New("end: before start")
	}
	return f, nil
}

// parseTime reads RFC 3339 or (fractional) Unix seconds; empty is zero.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if len(s) > 64 {
		return time.Time{}, errors.New("too long")
	}
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(secs) || math.IsInf(secs, 0) || secs < 0 || secs > 1e11 {
			return time.Time{}, fmt.Errorf("%q is out of range", s)
		}
		whole, frac := math.Modf(secs)
		return time.Unix(int64(whole), int64(math.Round(frac*1e9))).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor Unix seconds", s)
	}
	return t, nil
}
