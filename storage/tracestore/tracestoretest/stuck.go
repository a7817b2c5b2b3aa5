package tracestoretest

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/meshlens/meshlens/storage/tracestore"
)

// StuckReader answers searches and trace fetches only when their context
// ends: a store too slow for a query API's search timeout. Calls counts
// the requests that reached it.
type StuckReader struct {
	tracestore.Reader
	Calls atomic.Int64
}

// FindTraces blocks until ctx ends.
func (s *StuckReader) FindTraces(ctx context.Context, _ tracestore.Query) ([]*tracestore.Trace, error) {
	s.Calls.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

// GetTrace blocks until ctx ends.
func (s *StuckReader) GetTrace(ctx context.Context, _ pcommon.TraceID) (*tracestore.Trace, error) {
	s.Calls.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}
