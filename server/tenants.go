package server

import (
	"net/http"

	"github.com/prometheus/prometheus/storage"
	"google.golang.org/grpc"

	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/query/errorapi"
	"github.com/meshlens/meshlens/server/security"
	"github.com/meshlens/meshlens/server/tenancy"
	"github.com/meshlens/meshlens/storage/tracestore"
)

// Multi-tenancy wiring (docs/security.md). Each helper returns its argument
// unchanged while multi_tenancy is off, so the rest of the wiring reads the
// same either way.

func (s *Server) tenancy() *tenancy.Tenancy {
	if !s.cfg.MultiTenancy.Enabled {
		return nil
	}
	t, err := tenancy.New(s.cfg.MultiTenancy)
	if err != nil {
		// LoadConfig refuses this configuration; a caller that skipped it
		// still gets isolation, with the defaults, never none.
		s.logger.Error("multi_tenancy: invalid settings; isolating by "+tenancy.DefaultHeader+" without a default tenant", "err", err)
		t, _ = tenancy.New(tenancy.Config{Enabled: true, Header: tenancy.DefaultHeader})
	}
	return t
}

// tenantHTTP resolves the tenant of every request that reads or writes
// tenant data on an HTTP port.
func (s *Server) tenantHTTP(h http.Handler) http.Handler {
	if t := s.tenancy(); t != nil {
		// A credential bound to tenants (auth) may name only those, and
		// may ask which they are (tenancy.TenantsPath, for the UI).
		return t.WithAuthorizer(security.TenantAllowed).Serve(h, tenancy.HTTPRule, security.BoundTenants)
	}
	return h
}

// tenantGRPCOptions resolve the tenant of every gRPC call but health checks.
func (s *Server) tenantGRPCOptions() []grpc.ServerOption {
	t := s.tenancy()
	if t == nil {
		return nil
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(t.UnaryInterceptor(tenancy.DefaultGRPCRule)),
		grpc.ChainStreamInterceptor(t.StreamInterceptor(tenancy.DefaultGRPCRule)),
	}
}

// tenantWrap applies wrap when multi-tenancy is on; every stage that
// stamps or enforces tenants goes through it.
func tenantWrap[T any](s *Server, v T, wrap func(T) T) T {
	if s.cfg.MultiTenancy.Enabled {
		return wrap(v)
	}
	return v
}

func (s *Server) tenantCalls(c pipeline.CallConsumer) pipeline.CallConsumer {
	return tenantWrap(s, c, tenancy.StampCalls)
}

func (s *Server) tenantTraces(c pipeline.TraceConsumer) pipeline.TraceConsumer {
	return tenantWrap(s, c, tenancy.StampTraces)
}

func (s *Server) tenantAppendable(a storage.Appendable) storage.Appendable {
	return tenantWrap(s, a, tenancy.Appendable)
}

func (s *Server) tenantQueryable(q storage.Queryable) storage.Queryable {
	return tenantWrap(s, q, tenancy.Queryable)
}

func (s *Server) tenantTraceReader(r tracestore.Reader) tracestore.Reader {
	return tenantWrap(s, r, tenancy.Reader)
}

func (s *Server) tenantErrors(src errorapi.Source) errorapi.Source {
	if s.cfg.MultiTenancy.Enabled {
		return tenancy.Errors(src)
	}
	return src
}

// recommendationsOn: recommendations are computed over every call, whoever
// sent it, so they are off while tenants are isolated.
func (s *Server) recommendationsOn() bool {
	if !s.cfg.Processors.Recommend.Enabled {
		return false
	}
	if s.cfg.MultiTenancy.Enabled {
		s.logger.Warn("processors.recommendations is off: recommendations are not per tenant and multi_tenancy is on")
		return false
	}
	return true
}
