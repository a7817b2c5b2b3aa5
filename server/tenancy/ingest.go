package tenancy

import (
	"context"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/pipeline"
)

// StampCalls sets Call.Tenant of every call to the tenant of the context
// before handing the batch on: the queue behind it is asynchronous, so the
// tenant travels with each call from here on.
func StampCalls(next pipeline.CallConsumer) pipeline.CallConsumer {
	return pipeline.CallConsumerFunc(func(ctx context.Context, calls []model.Call) error {
		id, err := mustFromContext(ctx)
		if err != nil {
			return pipeline.Permanent(err)
		}
		for i := range calls {
			calls[i].Tenant = id
		}
		return next.ConsumeCalls(ctx, calls)
	})
}

// StampTraces sets the model.TenantAttribute resource attribute of every
// resource in td to the tenant of the context, replacing any value the
// client sent, so that a tenant cannot write spans another tenant reads.
func StampTraces(next pipeline.TraceConsumer) pipeline.TraceConsumer {
	return pipeline.TraceConsumerFunc(func(ctx context.Context, td ptrace.Traces) error {
		id, err := mustFromContext(ctx)
		if err != nil {
			return pipeline.Permanent(err)
		}
		rss := td.ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			rss.At(i).Resource().Attributes().PutStr(model.TenantAttribute, id)
		}
		return next.ConsumeTraces(ctx, td)
	})
}
