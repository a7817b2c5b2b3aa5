package tenancy

import (
	"context"

	"github.com/meshlens/meshlens/processors/errorlog"
)

// ErrorSource is what the error-log API reads (errorapi.Source).
type ErrorSource interface {
	Query(ctx context.Context, f errorlog.Filter) ([]errorlog.Record, error)
}

// Errors confines error-log queries to the tenant of the context.
func Errors(src ErrorSource) ErrorSource { return tenantErrors{src: src} }

type tenantErrors struct{ src ErrorSource }

func (t tenantErrors) Query(ctx context.Context, f errorlog.Filter) ([]errorlog.Record, error) {
	id, err := mustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	f.Tenant = id
	return t.src.Query(ctx, f)
}
