package main

import (
	"encoding/json"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// Every send must carry fresh trace ids that SentID can recompute, in both
// encodings, without changing anything else.
func TestStampRewritesTraceIDs(t *testing.T) {
	w := syntheticWorkload(500, 100, 1)
	if w.spans() == 0 {
		t.Fatal("empty workload")
	}
	otlp, zk := encodeBoth(t, w)
	const seq = 12345
	t.Run("otlp", func(t *testing.T) {
		p := otlp[0]
		body := p.Stamp(nil, seq, time.Time{})
		if len(body) != len(p.Body) {
			t.Fatalf("stamped length %d, template %d", len(body), len(p.Body))
		}
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil {
			t.Fatal(err)
		}
		want := map[[16]byte]bool{}
		for _, id := range p.IDs {
			want[SentID(id, seq)] = true
		}
		n := 0
		rss := req.Traces().ResourceSpans()
		for i := range rss.Len() {
			ss := rss.At(i).ScopeSpans().At(0).Spans()
			for j := range ss.Len() {
				n++
				if !want[ss.At(j).TraceID()] {
					t.Fatalf("span %d has trace id %x, not a stamped one", n, ss.At(j).TraceID())
				}
			}
		}
		if n != p.Spans {
			t.Fatalf("decoded %d spans, payload says %d", n, p.Spans)
		}
	})
	t.Run("zipkin", func(t *testing.T) {
		p := zk[0]
		body := p.Stamp(nil, seq, time.Time{})
		var spans []struct {
			TraceID string `json:"traceId"`
		}
		if err := json.Unmarshal(body, &spans); err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{}
		for _, id := range p.IDs {
			want[traceIDHex(SentID(id, seq))] = true
		}
		for i, s := range spans {
			if !want[s.TraceID] {
				t.Fatalf("span %d has trace id %s, not a stamped one", i, s.TraceID)
			}
		}
		if len(spans) != p.Spans {
			t.Fatalf("decoded %d spans, payload says %d", len(spans), p.Spans)
		}
	})
	if SentID(otlp[0].IDs[0], 1) == SentID(otlp[0].IDs[0], 2) {
		t.Error("two sends share a trace id")
	}
}

func TestBookinfoWorkload(t *testing.T) {
	w := bookinfoWorkload(200, 1)
	if w.spans() < 200 || len(w.Traces) == 0 {
		t.Fatalf("%d traces", len(w.Traces))
	}
	for _, tr := range w.Traces {
		ids := map[[8]byte]bool{}
		for _, s := range tr {
			if ids[s.ID] {
				t.Fatalf("duplicate span id %x in one trace: server halves must get their own id", s.ID)
			}
			ids[s.ID] = true
		}
	}
}

// encodeBoth encodes w as 100-span OTLP and Zipkin JSON payloads.
func encodeBoth(t *testing.T, w workload) (otlp, zipkin []*payload) {
	t.Helper()
	otlp, err := encodeOTLP(w, 100)
	if err != nil {
		t.Fatal(err)
	}
	if zipkin, err = encodeZipkin(w, 100); err != nil {
		t.Fatal(err)
	}
	return otlp, zipkin
}
