package tenancy

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// GRPCRule classifies a gRPC method (its full name, "/pkg.Service/Method").
type GRPCRule func(fullMethod string) Need

// DefaultGRPCRule: health checks carry no tenant; Jaeger's remote storage
// API (jaeger.storage.v2) reads; every other service on meshlens's gRPC
// ports (ALS, Metrics Service, mesh reports, Jaeger and OTLP collectors)
// writes.
func DefaultGRPCRule(fullMethod string) Need {
	switch {
	case strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/"), strings.HasPrefix(fullMethod, "/grpc.reflection."):
		return NoTenant
	case strings.HasPrefix(fullMethod, "/jaeger.storage.v2."):
		return ReadTenant
	}
	return WriteTenant
}

func (t *Tenancy) grpcContext(ctx context.Context, need Need) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	id, err := t.resolve(md.Get(t.metaKey), need == WriteTenant)
	if err != nil {
		c := codes.InvalidArgument
		if errors.Is(err, ErrNoTenant) {
			c = codes.Unauthenticated
		}
		return nil, status.Error(c, err.Error())
	}
	return NewContext(ctx, id), nil
}

// UnaryInterceptor puts the call's tenant in its context, or answers
// UNAUTHENTICATED when it is missing and INVALID_ARGUMENT when invalid.
func (t *Tenancy) UnaryInterceptor(rule GRPCRule) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		need := rule(info.FullMethod)
		if need == NoTenant {
			return handler(ctx, req)
		}
		tctx, err := t.grpcContext(ctx, need)
		if err != nil {
			return nil, err
		}
		return handler(tctx, req)
	}
}

// StreamInterceptor is UnaryInterceptor for streams: the tenant is read
// once, from the stream's metadata, before any message.
func (t *Tenancy) StreamInterceptor(rule GRPCRule) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		need := rule(info.FullMethod)
		if need == NoTenant {
			return handler(srv, ss)
		}
		tctx, err := t.grpcContext(ss.Context(), need)
		if err != nil {
			return err
		}
		return handler(srv, tenantStream{ServerStream: ss, ctx: tctx})
	}
}

type tenantStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s tenantStream) Context() context.Context { return s.ctx }
