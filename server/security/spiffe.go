package security

import (
	"context"
	"fmt"
	"path"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// SPIFFEAllowList admits gRPC calls whose client certificate carries a
// SPIFFE ID (URI SAN) matching one of its patterns. Patterns are SPIFFE IDs
// in which "*" matches one path segment:
// "spiffe://cluster.local/ns/istio-system/sa/*",
// "spiffe://cluster.local/ns/*/sa/bookinfo-productpage".
type SPIFFEAllowList struct {
	patterns []string
	methods  map[string]bool
}

// NewSPIFFEAllowList checks the patterns and returns the list guarding the
// given full gRPC method names.
func NewSPIFFEAllowList(patterns, methods []string) (*SPIFFEAllowList, error) {
	for _, p := range patterns {
		if !strings.HasPrefix(p, "spiffe://") {
			return nil, fmt.Errorf("%q is not a SPIFFE ID pattern (spiffe://<trust domain>/ns/<ns>/sa/<sa>)", p)
		}
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("pattern %q: %w", p, err)
		}
	}
	m := map[string]bool{}
	for _, x := range methods {
		m[x] = true
	}
	return &SPIFFEAllowList{patterns: patterns, methods: m}, nil
}

// Allowed reports whether id matches a pattern.
func (l *SPIFFEAllowList) Allowed(id string) bool {
	for _, p := range l.patterns {
		if ok, _ := path.Match(p, id); ok {
			return true
		}
	}
	return false
}

// PeerSPIFFEIDs returns the SPIFFE IDs of the verified client certificate
// of ctx's connection; none without TLS or a client certificate.
func PeerSPIFFEIDs(ctx context.Context) []string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.PeerCertificates) == 0 {
		return nil
	}
	var out []string
	for _, u := range info.State.PeerCertificates[0].URIs {
		if u.Scheme == "spiffe" {
			out = append(out, u.String())
		}
	}
	return out
}

func (l *SPIFFEAllowList) check(ctx context.Context, method string) error {
	if !l.methods[method] {
		return nil
	}
	ids := PeerSPIFFEIDs(ctx)
	for _, id := range ids {
		if l.Allowed(id) {
			return nil
		}
	}
	if len(ids) == 0 {
		return status.Error(codes.PermissionDenied, "meshlens: this service accepts only clients with a verified SPIFFE certificate (mutual TLS)")
	}
	return status.Errorf(codes.PermissionDenied, "meshlens: SPIFFE ID %s is not in the allow-list", strings.Join(ids, ", "))
}

// StreamInterceptor refuses a guarded stream from a client not on the list
// with PERMISSION_DENIED before the handler runs.
func (l *SPIFFEAllowList) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := l.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// UnaryInterceptor is the same for unary methods.
func (l *SPIFFEAllowList) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := l.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}
