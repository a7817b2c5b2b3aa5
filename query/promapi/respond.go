package promapi

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/util/annotations"
)

// ErrorType is the errorType field of a Prometheus error answer.
type ErrorType string

// Error types, as Prometheus names them.
const (
	ErrBadData     ErrorType = "bad_data"
	ErrExec        ErrorType = "execution"
	ErrTimeout     ErrorType = "timeout"
	ErrCanceled    ErrorType = "canceled"
	ErrInternal    ErrorType = "internal"
	ErrUnavailable ErrorType = "unavailable"
	ErrNotFound    ErrorType = "not_found"
)

// Error is a failed API call: the error type decides the HTTP status.
type Error struct {
	Type ErrorType
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Type, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// HTTPStatus is the status Prometheus answers for the error type.
func (e *Error) HTTPStatus() int {
	switch e.Type {
	case ErrBadData:
		return http.StatusBadRequest
	case ErrExec:
		return http.StatusUnprocessableEntity
	case ErrTimeout, ErrCanceled, ErrUnavailable:
		return http.StatusServiceUnavailable
	case ErrNotFound:
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

func badData(err error) *Error { return &Error{Type: ErrBadData, Err: err} }

func invalidParam(name string, err error) *Error {
	return badData(fmt.Errorf("invalid parameter %q: %w", name, err))
}

// engineError classifies an error from query execution or storage the way
// Prometheus does.
func engineError(err error) *Error {
	var (
		eqc promql.ErrQueryCanceled
		eqt promql.ErrQueryTimeout
		es  promql.ErrStorage
	)
	switch {
	case errors.As(err, &eqc):
		return &Error{Type: ErrCanceled, Err: err}
	case errors.As(err, &eqt):
		return &Error{Type: ErrTimeout, Err: err}
	case errors.As(err, &es):
		return &Error{Type: ErrInternal, Err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Type: ErrTimeout, Err: err}
	case errors.Is(err, context.Canceled):
		return &Error{Type: ErrCanceled, Err: err}
	}
	return &Error{Type: ErrExec, Err: err}
}

// result is what every handler returns; wrap turns it into the response so
// handlers never touch the ResponseWriter.
type result struct {
	data     any
	err      *Error
	warnings annotations.Annotations
	// finalize runs after the answer is written (query.Close, querier.Close):
	// the data may point into memory the engine reuses.
	finalize func()
}

type apiFunc func(r *http.Request) result

func fail(err *Error) result { return result{err: err} }

// minGzipBytes is the size below which compressing costs more than it saves.
const minGzipBytes = 1024

func (a *API) wrap(f apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, a.opts.MaxRequestBytes)
		}
		if err := r.ParseForm(); err != nil {
			a.writeError(w, r, badData(fmt.Errorf("error parsing form values: %w", err)))
			return
		}
		res := f(r)
		if res.finalize != nil {
			defer res.finalize()
		}
		if res.err != nil {
			a.writeError(w, r, res.err)
			return
		}
		warn, info := res.warnings.AsStrings(r.FormValue("query"), 10, 10)
		buf := &bytes.Buffer{}
		buf.WriteString(`{"status":"success","data":`)
		if err := encodeData(buf, res.data); err != nil {
			a.logger.Error("encoding API answer", "path", r.URL.Path, "err", err)
			a.writeError(w, r, &Error{Type: ErrInternal, Err: err})
			return
		}
		appendStrings(buf, "warnings", warn)
		appendStrings(buf, "infos", info)
		buf.WriteByte('}')
		a.write(w, r, http.StatusOK, buf.Bytes())
	})
}

func appendStrings(buf *bytes.Buffer, field string, ss []string) {
	if len(ss) == 0 {
		return
	}
	buf.WriteString(`,"` + field + `":[`)
	for i, s := range ss {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(appendJSONString(nil, s))
	}
	buf.WriteByte(']')
}

func (a *API) writeError(w http.ResponseWriter, r *http.Request, e *Error) {
	body, err := json.Marshal(struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
	}{"error", string(e.Type), e.Err.Error()})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	a.write(w, r, e.HTTPStatus(), body)
}

func (a *API) write(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Add("Vary", "Accept-Encoding")
	if len(body) >= minGzipBytes && acceptsGzip(r) {
		h.Set("Content-Encoding", "gzip")
		w.WriteHeader(status)
		zw := gzip.NewWriter(w)
		_, err := zw.Write(body)
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			a.logger.Debug("writing API answer", "path", r.URL.Path, "err", err)
		}
		return
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	if _, err := w.Write(body); err != nil {
		a.logger.Debug("writing API answer", "path", r.URL.Path, "err", err)
	}
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			continue
		}
		// "gzip;q=0" explicitly refuses gzip.
		if v, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q="); ok {
			if q, err := strconv.ParseFloat(v, 64); err == nil && q == 0 {
				return false
			}
		}
		return true
	}
	return false
}
