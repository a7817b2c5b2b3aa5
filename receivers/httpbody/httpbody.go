// Package httpbody reads the bodies of span-ingest HTTP requests (Zipkin,
// OTLP/HTTP) with the same limits everywhere: the body as sent and the body
// inflated from gzip are both capped, an unknown Content-Encoding is refused,
// and JSON nesting is bounded before any recursive decoder runs.
package httpbody

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Error carries the HTTP status a body failure is answered with.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// StatusOf is the HTTP status for an error from Read or Gunzip: the Error's
// own status, else 400.
func StatusOf(err error) int {
	var he *Error
	if errors.As(err, &he) {
		return he.Status
	}
	return http.StatusBadRequest
}

// Read reads req's body into buf, inflating gzip, and returns the bytes
// (which alias buf or a new buffer). The body as sent is capped at maxBytes
// and the inflated body at maxInflated; either overflow is a 413 *Error, an
// unknown Content-Encoding a 415 and a corrupt gzip stream a 400.
func Read(req *http.Request, buf *bytes.Buffer, maxBytes, maxInflated int64) ([]byte, error) {
	if req.ContentLength > maxBytes {
		return nil, &Error{http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes exceeds the %d-byte limit", req.ContentLength, maxBytes)}
	}
	var gz bool
	switch enc := strings.ToLower(strings.TrimSpace(req.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		gz = true
	default:
		return nil, &Error{http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported Content-Encoding %q: only gzip", enc)}
	}
	if req.ContentLength > 0 && !gz {
		buf.Grow(int(req.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(req.Body, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading body: %w", err)
	}
	if n > maxBytes {
		return nil, &Error{http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds the %d-byte limit", maxBytes)}
	}
	if !gz {
		return buf.Bytes(), nil
	}
	return Gunzip(buf.Bytes(), maxInflated)
}

// Gunzip inflates a gzip body, refusing (413) to produce more than max bytes.
func Gunzip(compressed []byte, max int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return nil, fmt.Errorf("invalid gzip body: %w", err)
	}
	defer zr.Close()
	var out bytes.Buffer
	// A guess at the ratio, bounded, to avoid regrowing for typical JSON.
	out.Grow(int(min(int64(len(compressed))*8, max)))
	n, err := out.ReadFrom(io.LimitReader(zr, max+1))
	if err != nil {
		return nil, fmt.Errorf("invalid gzip body: %w", err)
	}
	if n > max {
		return nil, &Error{http.StatusRequestEntityTooLarge, fmt.Sprintf("decompressed body exceeds the %d-byte limit", max)}
	}
	return out.Bytes(), nil
}

// CheckJSONDepth fails when body nests arrays/objects deeper than max. It
// is a linear scan that ignores brackets inside strings, run before the
// real decoder so a deeply nested body costs one pass and no recursion.
func CheckJSONDepth(body []byte, max int) error {
	depth := 0
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '"':
			// Jump to the closing quote: one not preceded by an odd run of
			// backslashes.
			j := i + 1
			for {
				k := bytes.IndexByte(body[j:], '"')
				if k < 0 {
					return nil // unterminated: the decoder will say so
				}
				j += k
				n := 0
				for p := j - 1; p > i && body[p] == '\\'; p-- {
					n++
				}
				if n%2 == 0 {
					break
				}
				j++
			}
			i = j
		case '[', '{':
			if depth++; depth > max {
				return fmt.Errorf("JSON nested deeper than %d levels", max)
			}
		case ']', '}':
			depth--
		}
	}
	return nil
}
