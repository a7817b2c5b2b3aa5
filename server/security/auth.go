package security

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/server/tenancy"
)

// AuthConfig turns on authentication of the HTTP query API and UI. With
// neither TokensFile nor a JWKS set, the port is open (the default).
type AuthConfig struct {
	// TokensFile is a YAML list of static bearer tokens:
	//   - {token: "…", permissions: [read, write], name: grafana}
	// It is re-read when it changes.
	TokensFile string `yaml:"tokens_file"`
	// JWKSFile or JWKSURL hold the keys (RSA, EC) that OIDC-issued JWTs are
	// verified against. The URL is fetched at start and again when a token
	// names an unknown key id (at most every 30s).
	JWKSFile string `yaml:"jwks_file"`
	JWKSURL  string `yaml:"jwks_url"`
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// PermissionsClaim names the claim listing permissions, a space
	// separated string or a list; "read" and "write" (or
	// "meshlens:read", "meshlens:write") are recognised.
	PermissionsClaim string `yaml:"permissions_claim"`
}

// Enabled reports whether requests must authenticate.
func (c AuthConfig) Enabled() bool {
	return c.TokensFile != "" || c.JWKSFile != "" || c.JWKSURL != ""
}

// Validate names what is wrong.
func (c AuthConfig) Validate() error {
	var errs []error
	if c.JWKSFile != "" && c.JWKSURL != "" {
		errs = append(errs, errors.New("auth: set jwks_file or jwks_url, not both"))
	}
	if c.JWKSURL != "" && !strings.HasPrefix(c.JWKSURL, "https://") && !strings.HasPrefix(c.JWKSURL, "http://") {
		errs = append(errs, fmt.Errorf("auth.jwks_url: %q is not an http(s) URL", c.JWKSURL))
	}
	for field, p := range map[string]string{"auth.tokens_file": c.TokensFile, "auth.jwks_file": c.JWKSFile} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
	}
	if c.Enabled() && c.PermissionsClaim == "" {
		errs = append(errs, errors.New("auth.permissions_claim: must name a claim"))
	}
	return errors.Join(errs...)
}

// Permission is what a credential may do.
type Permission uint8

const (
	// PermRead allows queries, the UI and /metrics.
	PermRead Permission = 1 << iota
	// PermWrite allows span ingest on the query port.
	PermWrite
)

func (p Permission) String() string {
	var out []string
	if p&PermRead != 0 {
		out = append(out, "read")
	}
	if p&PermWrite != 0 {
		out = append(out, "write")
	}
	return strings.Join(out, ",")
}

func parsePermissions(words []string) Permission {
	var p Permission
	for _, w := range words {
		switch strings.TrimPrefix(strings.ToLower(w), "meshlens:") {
		case "read":
			p |= PermRead
		case "write":
			p |= PermWrite
		}
	}
	return p
}

// tokenEntry is one line of the tokens file.
type tokenEntry struct {
	Token       string   `yaml:"token"`
	Permissions []string `yaml:"permissions"`
	Name        string   `yaml:"name"`
	// Tenants binds the token to these tenants (multi_tenancy): it may
	// name no other in the tenant header. Empty: any tenant.
	Tenants []string `yaml:"tenants"`
}

type staticToken struct {
	hash    [32]byte
	perm    Permission
	name    string
	tenants []string
}

// TenantsClaim is the JWT claim that binds a token to tenants (a list, or
// a space-separated string), as the tokens file's tenants field does.
const TenantsClaim = "meshlens_tenants"

// principal is who a credential names and what it may do.
type principal struct {
	perm    Permission
	who     string
	tenants []string
}

// Authenticator checks bearer credentials. It never logs a token or a
// request body.
type Authenticator struct {
	cfg    AuthConfig
	logger *slog.Logger
	client *http.Client
	now    func() time.Time

	mu         sync.Mutex
	tokens     []staticToken
	tokenStamp string
	tokenCheck time.Time
	keys       map[string]any // kid -> *rsa.PublicKey / *ecdsa.PublicKey
	keysStamp  string
	keysFetch  time.Time
}

// NewAuthenticator loads the tokens file and the JWKS; a file that does
// not load stops start-up.
func NewAuthenticator(cfg AuthConfig, logger *slog.Logger) (*Authenticator, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{cfg: cfg, logger: logger, client: &http.Client{Timeout: 10 * time.Second}, now: time.Now}
	if cfg.TokensFile != "" {
		if err := a.reloadTokens(true); err != nil {
			return nil, err
		}
	}
	if cfg.JWKSFile != "" || cfg.JWKSURL != "" {
		if err := a.reloadKeys(context.Background(), true); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *Authenticator) reloadTokens(force bool) error {
	fi, err := os.Stat(a.cfg.TokensFile)
	if err != nil {
		return fmt.Errorf("auth.tokens_file: %w", err)
	}
	stamp := fmt.Sprint(fi.ModTime().UnixNano(), fi.Size())
	if !force && stamp == a.tokenStamp {
		return nil
	}
	data, err := os.ReadFile(a.cfg.TokensFile)
	if err != nil {
		return fmt.Errorf("auth.tokens_file: %w", err)
	}
	var entries []tokenEntry
	if err := yaml.Unmarshal(data, &entries); err != nil {
		// The error names the line, never the file's content.
		return fmt.Errorf("auth.tokens_file %s: not a YAML list of {token, permissions, name}: %w", a.cfg.TokensFile, err)
	}
	var toks []staticToken
	for i, e := range entries {
		if len(e.Token) < 16 {
			return fmt.Errorf("auth.tokens_file %s: entry %d (%s): token shorter than 16 characters", a.cfg.TokensFile, i+1, e.Name)
		}
		p := parsePermissions(e.Permissions)
		if p == 0 {
			return fmt.Errorf("auth.tokens_file %s: entry %d (%s): permissions must list read and/or write", a.cfg.TokensFile, i+1, e.Name)
		}
		for _, id := range e.Tenants {
			if err := tenancy.ValidateID(id); err != nil {
				return fmt.Errorf("auth.tokens_file %s: entry %d (%s): tenants: %w", a.cfg.TokensFile, i+1, e.Name, err)
			}
		}
		toks = append(toks, staticToken{hash: sha256.Sum256([]byte(e.Token)), perm: p, name: e.Name, tenants: e.Tenants})
	}
	a.tokens, a.tokenStamp = toks, stamp
	if !force {
		a.logger.Info("auth: tokens file reloaded", "tokens", len(toks))
	}
	return nil
}

// jwk is one key of a JWKS document.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// ParseJWKS decodes the RSA and EC signing keys of a JWKS document by key id.
func ParseJWKS(data []byte) (map[string]any, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	b64 := base64.RawURLEncoding
	out := map[string]any{}
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		switch k.Kty {
		case "RSA":
			n, err1 := b64.DecodeString(k.N)
			e, err2 := b64.DecodeString(k.E)
			if err1 != nil || err2 != nil || len(e) > 4 {
				return nil, fmt.Errorf("jwks: key %q: bad RSA n/e", k.Kid)
			}
			out[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		case "EC":
			var curve elliptic.Curve
			switch k.Crv {
			case "P-256":
				curve = elliptic.P256()
			case "P-384":
				curve = elliptic.P384()
			case "P-521":
				curve = elliptic.P521()
			default:
				return nil, fmt.Errorf("jwks: key %q: curve %q not supported", k.Kid, k.Crv)
			}
			x, err1 := b64.DecodeString(k.X)
			y, err2 := b64.DecodeString(k.Y)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("jwks: key %q: bad EC x/y", k.Kid)
			}
			out[k.Kid] = &ecdsa.PublicKey{Curve: curve, X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("jwks: no RSA or EC signing key")
	}
	return out, nil
}

func (a *Authenticator) reloadKeys(ctx context.Context, force bool) error {
	var data []byte
	var stamp string
	if a.cfg.JWKSFile != "" {
		fi, err := os.Stat(a.cfg.JWKSFile)
		if err != nil {
			return fmt.Errorf("auth.jwks_file: %w", err)
		}
		stamp = fmt.Sprint(fi.ModTime().UnixNano(), fi.Size())
		if !force && stamp == a.keysStamp {
			return nil
		}
		if data, err = os.ReadFile(a.cfg.JWKSFile); err != nil {
			return fmt.Errorf("auth.jwks_file: %w", err)
		}
	} else {
		if !force && a.now().Sub(a.keysFetch) < 30*time.Second {
			return nil
		}
		a.keysFetch = a.now()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.cfg.JWKSURL, nil)
		if err != nil {
			return fmt.Errorf("auth.jwks_url: %w", err)
		}
		resp, err := a.client.Do(req)
		if err != nil {
			return fmt.Errorf("auth.jwks_url: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("auth.jwks_url: %s answered %s", a.cfg.JWKSURL, resp.Status)
		}
		if data, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20)); err != nil {
			return fmt.Errorf("auth.jwks_url: %w", err)
		}
	}
	keys, err := ParseJWKS(data)
	if err != nil {
		return err
	}
	a.keys, a.keysStamp = keys, stamp
	return nil
}

// ErrUnauthenticated is returned for a missing or invalid credential.
var ErrUnauthenticated = errors.New("unauthenticated")

// Authenticate returns the permissions of the request's bearer credential.
func (a *Authenticator) Authenticate(r *http.Request) (Permission, string, error) {
	p, err := a.authenticate(r)
	return p.perm, p.who, err
}

func (a *Authenticator) authenticate(r *http.Request) (principal, error) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return principal{}, fmt.Errorf("%w: send Authorization: Bearer <token>", ErrUnauthenticated)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cfg.TokensFile != "" {
		if time.Since(a.tokenCheck) > time.Second {
			a.tokenCheck = time.Now()
			if err := a.reloadTokens(false); err != nil {
				a.logger.Warn("auth: tokens file reload failed; keeping the loaded tokens", "err", err)
			}
		}
		sum := sha256.Sum256([]byte(tok))
		for _, t := range a.tokens {
			if subtle.ConstantTimeCompare(sum[:], t.hash[:]) == 1 {
				return principal{perm: t.perm, who: t.name, tenants: t.tenants}, nil
			}
		}
	}
	if a.keys == nil || strings.Count(tok, ".") != 2 {
		return principal{}, fmt.Errorf("%w: unknown token", ErrUnauthenticated)
	}
	return a.verifyJWT(r.Context(), tok)
}

// verifyJWT runs with a.mu held.
func (a *Authenticator) verifyJWT(ctx context.Context, tok string) (principal, error) {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}),
		jwt.WithExpirationRequired(), jwt.WithLeeway(30 * time.Second), jwt.WithTimeFunc(a.now),
	}
	if a.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(a.cfg.Issuer))
	}
	if a.cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(a.cfg.Audience))
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if k, ok := a.keys[kid]; ok {
			return k, nil
		}
		// A rotated key: look again (rate-limited for URLs).
		if err := a.reloadKeys(ctx, false); err != nil {
			a.logger.Warn("auth: JWKS reload failed", "err", err)
		}
		if k, ok := a.keys[kid]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("no key with kid %q in the JWKS", kid)
	}, opts...)
	if err != nil {
		return principal{}, fmt.Errorf("%w: invalid JWT: %v", ErrUnauthenticated, err)
	}
	sub, _ := claims["sub"].(string)
	return principal{perm: parsePermissions(claimWords(claims[a.cfg.PermissionsClaim])), who: sub, tenants: claimWords(claims[TenantsClaim])}, nil
}

// claimWords reads a claim that is a space-separated string or a list.
func claimWords(c any) []string {
	var words []string
	switch v := c.(type) {
	case string:
		words = strings.Fields(v)
	case []any:
		for _, w := range v {
			if s, ok := w.(string); ok {
				words = append(words, s)
			}
		}
	}
	return words
}

// Rule names the permission a request needs; 0 means none (health probes).
type Rule func(r *http.Request) Permission

// IngestPaths are the span ingest endpoints the query port also serves.
var IngestPaths = []string{"/api/v2/spans", "/api/v1/spans", "/v1/traces"}

// QueryPortRule: probes and the UI's static shell and assets are open,
// span ingest needs write, everything else (queries, /metrics) needs read.
// The shell holds no data, and the browser must be able to load it to ask
// for the token its API calls then carry.
func QueryPortRule(r *http.Request) Permission {
	switch {
	case r.URL.Path == "/healthz" || r.URL.Path == "/readyz":
		return 0
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && (r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, "/ui/")):
		return 0
	case r.Method == http.MethodPost && slices.Contains(IngestPaths, r.URL.Path):
		return PermWrite
	}
	return PermRead
}

// IngestPortRule is for a receiver port that also serves queries (Zipkin):
// ingest stays open (protect it with mutual TLS), queries need read.
func IngestPortRule(r *http.Request) Permission {
	if r.Method == http.MethodPost && slices.Contains(IngestPaths, r.URL.Path) {
		return 0
	}
	return QueryPortRule(r)
}

// Middleware refuses requests without the permission rule asks for: 401
// without a valid credential, 403 with one that lacks the permission.
func (a *Authenticator) Middleware(next http.Handler, rule Rule) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		need := rule(r)
		if need == 0 {
			next.ServeHTTP(w, r)
			return
		}
		p, err := a.authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="meshlens"`)
			writeAuthError(w, http.StatusUnauthorized, err.Error())
			return
		}
		if p.perm&need != need {
			writeAuthError(w, http.StatusForbidden, fmt.Sprintf("%q may %s; this request needs %s", p.who, p.perm, need))
			return
		}
		if len(p.tenants) > 0 {
			r = r.WithContext(context.WithValue(r.Context(), tenantsKey{}, boundTenants{who: p.who, tenants: p.tenants}))
		}
		next.ServeHTTP(w, r)
	})
}

type tenantsKey struct{}

type boundTenants struct {
	who     string
	tenants []string
}

// ErrTenantDenied is returned by TenantAllowed for a tenant the request's
// credential is not bound to.
var ErrTenantDenied = errors.New("tenant not allowed")

// TenantAllowed reports whether the credential that authenticated the
// request of ctx may name tenant id: any tenant when it is bound to none
// (or auth is off), else one of its tenants.
func TenantAllowed(ctx context.Context, id string) error {
	b, ok := ctx.Value(tenantsKey{}).(boundTenants)
	if !ok || slices.Contains(b.tenants, id) {
		return nil
	}
	return fmt.Errorf("%w: %q may not read or write tenant %q", ErrTenantDenied, b.who, id)
}

// BoundTenants returns the tenants the credential that authenticated the
// request of ctx is bound to; nil when it is bound to none (it may name
// any) or auth is off.
func BoundTenants(ctx context.Context) []string {
	b, ok := ctx.Value(tenantsKey{}).(boundTenants)
	if !ok {
		return nil
	}
	return slices.Clone(b.tenants)
}

func writeAuthError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b, _ := json.Marshal(map[string]string{"status": "error", "errorType": http.StatusText(code), "error": msg})
	_, _ = w.Write(b)
}

// Headers adds the headers every response of an HTTP port carries (the UI
// adds its CSP and frame denial itself).
func Headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}
