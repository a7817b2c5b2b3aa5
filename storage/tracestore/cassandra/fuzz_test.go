package cassandra

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

// FuzzDecodeSpan: a span blob read back from Cassandra (corrupt, or
// written by another version) gives an error or spans, never a panic.
func FuzzDecodeSpan(f *testing.F) {
	td := tracestoretest.Fixture(tracestoretest.Base())
	rs := td.ResourceSpans().At(0)
	blob, err := encodeSpan(rs.Resource(), rs.ScopeSpans().At(0).Scope(), rs.ScopeSpans().At(0).Spans().At(0))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blob)
	f.Add(blob[:len(blob)/2])
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		a := tracestore.NewAssembler()
		if err := decodeSpanInto(a, b); err == nil {
			tracestoretest.EachSpan(a.Traces(), func(_ pcommon.Resource, sp ptrace.Span) { _ = sp.Name() })
		}
	})
}
