package tracestoretest

import (
	"fmt"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// IstioTraces builds n spans of Istio-like traces: 5 spans per trace (one
// shared client/server id), 10 span tags including a unique x-request-id,
// 20 services, 15 operations, spread over the last minute: the workload
// the store and collector benchmarks share. seq numbers the traces.
func IstioTraces(n int, seq *uint64) ptrace.Traces {
	td := ptrace.NewTraces()
	base := time.Now().Add(-time.Minute)
	for i := 0; i < n; i += 5 {
		*seq++
		tid := TraceID(*seq, *seq*7919)
		for j := 0; j < 5 && i+j < n; j++ {
			rs := td.ResourceSpans().AppendEmpty()
			svc := fmt.Sprintf("svc-%d", (int(*seq)+j)%20)
			rs.Resource().Attributes().PutStr("service.name", svc)
			rs.Resource().Attributes().PutStr("host.name", "node-"+svc)
			sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
			sp.SetTraceID(tid)
			sp.SetSpanID(SpanID(uint64(j/2 + 1)))
			if j > 0 {
				sp.SetParentSpanID(SpanID(uint64((j-1)/2 + 1)))
			}
			sp.SetName(fmt.Sprintf("GET /api/%d", (int(*seq)+j)%15))
			sp.SetKind([]ptrace.SpanKind{ptrace.SpanKindServer, ptrace.SpanKindClient, ptrace.SpanKindServer, ptrace.SpanKindClient, ptrace.SpanKindServer}[j])
			st := base.Add(time.Duration(*seq%60000)*time.Millisecond + time.Duration(j)*time.Millisecond)
			sp.SetStartTimestamp(pcommon.NewTimestampFromTime(st))
			sp.SetEndTimestamp(pcommon.NewTimestampFromTime(st.Add(time.Duration(5+*seq%50) * time.Millisecond)))
			a := sp.Attributes()
			a.PutStr("http.method", "GET")
			a.PutInt("http.status_code", 200)
			a.PutStr("guid:x-request-id", fmt.Sprintf("%016x-%d", *seq, j))
			a.PutStr("http.url", fmt.Sprintf("http://svc/api/%d", *seq%15))
			a.PutStr("upstream_cluster", "outbound|9080||"+svc)
			a.PutStr("node_id", "sidecar~10.0.0.1~"+svc)
			a.PutStr("response_flags", "-")
			a.PutStr("istio.mesh_id", "cluster.local")
			a.PutStr("peer.service", fmt.Sprintf("svc-%d", (int(*seq)+j+1)%20))
			a.PutStr("component", "proxy")
		}
	}
	return td
}
