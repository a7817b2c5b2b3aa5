// Package tenancy isolates tenants from each other when multi-tenancy is on
// (multi_tenancy): it reads the tenant of every request from an
// HTTP header or gRPC metadata (X-Scope-OrgID, as Mimir, Tempo and Loki do),
// stamps it on what is written (model.Call.Tenant, the model.TenantLabel of
// samples, the model.TenantAttribute of spans) and confines every read to
// it (a mandatory tenant matcher on metric selects, a mandatory tag on trace
// queries, a check on every trace returned).
//
// The wrappers sit between the wire and the stores, so receivers,
// processors and storage backends need no tenant logic of their own beyond
// carrying the field, and every storage backend is covered alike.
package tenancy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// DefaultHeader is the header Mimir, Tempo and Loki read the tenant from.
const DefaultHeader = "X-Scope-OrgID"

// MaxIDLength is the longest tenant id accepted (Mimir's limit).
const MaxIDLength = 150

// Config is multi_tenancy.
type Config struct {
	// Enabled turns isolation on: every write and query then carries a
	// tenant.
	Enabled bool `yaml:"enabled"`
	// Header names the HTTP header holding the tenant id; gRPC clients send
	// it as metadata of the same name, lower-cased.
	Header string `yaml:"header"`
	// DefaultTenant is used for writes (span, access-log and metrics
	// ingest) that carry no tenant; empty refuses them. Queries always need
	// the header, so no one reads a tenant's data by omission.
	DefaultTenant string `yaml:"default_tenant"`
}

// DefaultConfig is off, reading X-Scope-OrgID when turned on.
func DefaultConfig() Config { return Config{Header: DefaultHeader} }

// Validate names what is wrong.
func (c Config) Validate() error {
	var errs []error
	if c.Header == "" {
		errs = append(errs, errors.New("multi_tenancy.header: must not be empty"))
	} else if strings.ContainsAny(c.Header, " \t:\r\n") {
		errs = append(errs, fmt.Errorf("multi_tenancy.header: %q is not a valid header name", c.Header))
	}
	if c.DefaultTenant != "" {
		if err := ValidateID(c.DefaultTenant); err != nil {
			errs = append(errs, fmt.Errorf("multi_tenancy.default_tenant: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ErrInvalidID is wrapped by ValidateID's errors.
var ErrInvalidID = errors.New("invalid tenant id")

// ErrNoTenant means a request carried no tenant although tenancy is on.
var ErrNoTenant = errors.New("no tenant")

// ValidateID accepts Mimir's tenant ids: 1 to 150 characters among letters,
// digits and ! - _ . * ' ( ), and neither "." nor "..", so that an id is
// safe as a label value, a path segment and a file name.
func ValidateID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidID)
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("%w: %d characters, the limit is %d", ErrInvalidID, len(id), MaxIDLength)
	}
	if id == "." || id == ".." {
		return fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!-_.*'()", c) >= 0:
		default:
			return fmt.Errorf("%w: character %q at %d is not allowed (letters, digits and !-_.*'() are)", ErrInvalidID, c, i)
		}
	}
	return nil
}

type ctxKey struct{}

// NewContext returns ctx carrying tenant id.
func NewContext(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the tenant ctx carries.
func FromContext(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(ctxKey{}).(string)
	return id, ok && id != ""
}

// mustFromContext is FromContext for the enforcing wrappers, which fail
// closed: a path that forgot to set the tenant reads and writes nothing.
func mustFromContext(ctx context.Context) (string, error) {
	id, ok := FromContext(ctx)
	if !ok {
		return "", fmt.Errorf("multi-tenancy is on and the request carries no tenant: %w", ErrNoTenant)
	}
	return id, nil
}

// Tenancy resolves the tenant of requests.
type Tenancy struct {
	cfg Config
	// metaKey is Header as gRPC metadata keys are: lower case.
	metaKey string
	// authorize, when set, refuses a tenant the request's credential may
	// not name (see WithAuthorizer).
	authorize func(ctx context.Context, id string) error
}

// WithAuthorizer makes the HTTP middleware ask authorize whether the
// request may name the tenant it names; an error is answered 403. It runs
// inside authentication, which binds credentials to tenants.
func (t *Tenancy) WithAuthorizer(authorize func(ctx context.Context, id string) error) *Tenancy {
	t.authorize = authorize
	return t
}

// New checks cfg and returns a resolver.
func New(cfg Config) (*Tenancy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Tenancy{cfg: cfg, metaKey: strings.ToLower(cfg.Header)}, nil
}

// Header is the header (and, lower-cased, gRPC metadata key) read.
func (t *Tenancy) Header() string { return t.cfg.Header }

// resolve picks the tenant from the values of the header. write says
// whether the default tenant may stand in for a missing one.
func (t *Tenancy) resolve(values []string, write bool) (string, error) {
	switch len(values) {
	case 0:
		if write && t.cfg.DefaultTenant != "" {
			return t.cfg.DefaultTenant, nil
		}
		return "", fmt.Errorf("%w: multi-tenancy is on; send the tenant id in the %s header", ErrNoTenant, t.cfg.Header)
	case 1:
	default:
		// Mimir accepts "a|b" for federated reads; meshlens does not, and
		// two headers would make the answer depend on which one is read.
		return "", fmt.Errorf("%w: %d %s headers; send exactly one", ErrInvalidID, len(values), t.cfg.Header)
	}
	id := strings.TrimSpace(values[0])
	if id == "" {
		if write && t.cfg.DefaultTenant != "" {
			return t.cfg.DefaultTenant, nil
		}
		return "", fmt.Errorf("%w: the %s header is empty", ErrNoTenant, t.cfg.Header)
	}
	if err := ValidateID(id); err != nil {
		return "", fmt.Errorf("%s header: %w", t.cfg.Header, err)
	}
	return id, nil
}

// Need says what a request needs of tenancy.
type Need uint8

// Needs.
const (
	// NoTenant: probes, /metrics and the UI's static files carry no tenant
	// data.
	NoTenant Need = iota
	// ReadTenant: a query; the header is required.
	ReadTenant
	// WriteTenant: ingest; the default tenant may stand in.
	WriteTenant
)

// Rule classifies an HTTP request.
type Rule func(r *http.Request) Need

// IngestPaths are the HTTP span ingest endpoints.
var IngestPaths = []string{"/api/v2/spans", "/api/v1/spans", "/v1/traces"}

// HTTPRule: span ingest is a write; the APIs (/api/..., /federate) are
// reads; everything else (probes, /metrics, UI files) carries no tenant
// data.
func HTTPRule(r *http.Request) Need {
	p := r.URL.Path
	if r.Method == http.MethodPost {
		for _, ip := range IngestPaths {
			if p == ip {
				return WriteTenant
			}
		}
	}
	if strings.HasPrefix(p, "/api/") || p == "/federate" || p == "/v1/traces" {
		return ReadTenant
	}
	return NoTenant
}

// Middleware puts the request's tenant in its context, or answers 401 when
// it is missing and 400 when it is invalid.
func (t *Tenancy) Middleware(next http.Handler, rule Rule) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		need := rule(r)
		if need == NoTenant {
			next.ServeHTTP(w, r)
			return
		}
		id, err := t.resolve(r.Header.Values(t.cfg.Header), need == WriteTenant)
		if err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, ErrNoTenant) {
				code = http.StatusUnauthorized
			}
			t.writeError(w, code, err.Error())
			return
		}
		if t.authorize != nil {
			if err := t.authorize(r.Context(), id); err != nil {
				t.writeError(w, http.StatusForbidden, err.Error())
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), id)))
	})
}

// httpError is the body of the middleware's refusals: the Prometheus API
// error shape, which Grafana and the Jaeger UI show, plus TenantHeader.
type httpError struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	// TenantHeader names the header the tenant is read from. It is set on
	// every refusal about the tenant (401 none, 400 invalid, 403 not
	// allowed) and on no other error, so that a client — the embedded UI —
	// can tell "name a tenant" from "send a credential" (auth's 401, which
	// carries WWW-Authenticate instead) without parsing the message, and
	// learns the header's configured name.
	TenantHeader string `json:"tenantHeader"`
}

func (t *Tenancy) writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(httpError{Status: "error", ErrorType: http.StatusText(code), Error: msg, TenantHeader: t.cfg.Header})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
