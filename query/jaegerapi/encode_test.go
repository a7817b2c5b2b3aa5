package jaegerapi

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

// stdEnvelope is what writeJSON wrote for the trace answers before
// writeTraces: the reference the hand encoder must match byte for byte.
func stdEnvelope(t testing.TB, traces []uiTrace, errs []respError) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(envelope{Data: traces, Total: len(traces), Errors: errs}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func checkSame(t testing.TB, traces []uiTrace, errs []respError) {
	t.Helper()
	got, err := appendEnvelope(nil, traces, errs, nil)
	if err != nil {
		t.Fatalf("appendEnvelope: %v", err)
	}
	// What the handler writes: in pieces, or through encoding/json for
	// values the encoder leaves to it.
	rec := httptest.NewRecorder()
	writeTraces(rec, traces, errs)
	if !bytes.Equal(rec.Body.Bytes(), got) {
		t.Fatalf("writeTraces wrote %d bytes that differ from appendEnvelope's %d", rec.Body.Len(), len(got))
	}
	if want := stdEnvelope(t, traces, errs); !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("differs from encoding/json at byte %d:\n got %q\nwant %q", i, got[max(0, i-40):min(len(got), i+40)], want[max(0, i-40):min(len(want), i+40)])
	}
}

func TestEncodeMatchesEncodingJSON(t *testing.T) {
	base := time.Unix(1_700_000_000, 123_456_789)
	td := tracestoretest.Build(
		tracestoretest.SpanSpec{Service: "front<end>&\"co\"", Trace: tracestoretest.TraceID(1, 2), ID: tracestoretest.SpanID(1),
			Name: "GET /a\u2028b\u2029c\x01\x1f\t\n\r\b\f\\", Kind: ptrace.SpanKindServer, Start: base, Duration: 1500 * time.Microsecond,
			Attrs: map[string]any{"http.status_code": int64(503), "ok": true, "ratio": 0.25, "tiny": 1e-7, "huge": 1e21, "neg": -123456.789,
				"nan": math.NaN(), "inf": math.Inf(1), "bytes": []byte{0, 1, 254, 255}, "bad\xffutf8": "v\xc3\x28", "emoji": "😀", "empty": ""},
			Error: true},
		tracestoretest.SpanSpec{Service: "back", Trace: tracestoretest.TraceID(1, 2), ID: tracestoretest.SpanID(2), Parent: tracestoretest.SpanID(1),
			Name: "query", Kind: ptrace.SpanKindClient, Start: base.Add(-time.Millisecond), Duration: time.Millisecond,
			Events: []string{"retry <timeout>", "done"}, LinkTo: tracestoretest.TraceID(9, 9), StatusMsg: "db & cache down",
			ResAttrs: map[string]string{"host.name": "node-1", "k8s.pod.name": "back-7f<9>"}},
	)
	tr := &tracestore.Trace{ID: tracestoretest.TraceID(1, 2), Spans: td, Warnings: []string{"trace has 3 spans; only the first 2 are returned"}}
	for _, keep := range []bool{false, true} {
		checkSame(t, []uiTrace{toUI(tr, keep)}, nil)
	}
	checkSame(t, []uiTrace{toUI(tr, false), toUI(&tracestore.Trace{ID: tr.ID, Spans: td}, false)},
		[]respError{{Code: 404, Msg: "trace not found", TraceID: "00ff"}, {Msg: "no code"}})
	checkSame(t, []uiTrace{}, nil)
	checkSame(t, nil, nil)
	// Nil slices and maps, zero flags and values encoding/json handles
	// through its fallback (an int, a nested map).
	checkSame(t, []uiTrace{{TraceID: "x", Spans: []uiSpan{{SpanID: "1", Tags: []uiKeyValue{{Key: "n", Type: "int64", Value: 7},
		{Key: "m", Type: "string", Value: map[string]int{"b": 1, "a": 2}}, {Key: "nil", Value: nil}}}}}}, nil)
}

// TestWriteTracesInPieces: an answer larger than flushBytes is written in
// several pieces and still reads back whole.
func TestWriteTracesInPieces(t *testing.T) {
	var spans []uiSpan
	for i := range 2000 {
		spans = append(spans, uiSpan{TraceID: "t", SpanID: strings.Repeat("s", i%50), Tags: []uiKeyValue{{Key: "i", Type: "int64", Value: int64(i)}}})
	}
	traces := []uiTrace{{TraceID: "t", Spans: spans}}
	rec := &countingRecorder{ResponseRecorder: httptest.NewRecorder()}
	writeTraces(rec, traces, nil)
	if rec.writes < 2 {
		t.Fatalf("%d bytes in %d write(s), want pieces of ~%d", rec.Body.Len(), rec.writes, flushBytes)
	}
	if want := stdEnvelope(t, traces, nil); !bytes.Equal(rec.Body.Bytes(), want) {
		t.Fatal("pieces do not add up to encoding/json's answer")
	}
}

type countingRecorder struct {
	*httptest.ResponseRecorder
	writes int
}

func (c *countingRecorder) Write(b []byte) (int, error) {
	c.writes++
	return c.ResponseRecorder.Write(b)
}

func TestEncodeRefusesWhatEncodingJSONRefuses(t *testing.T) {
	tr := []uiTrace{{TraceID: "x", Spans: []uiSpan{{Tags: []uiKeyValue{{Key: "f", Type: "float64", Value: math.Inf(-1)}}}}}}
	if _, err := appendEnvelope(nil, tr, nil, nil); err == nil {
		t.Fatal("an infinite float was encoded; encoding/json refuses it")
	}
	if encodable(tr) {
		t.Fatal("encodable accepts an infinite float")
	}
}

func FuzzEncodeTraces(f *testing.F) {
	f.Add("key", "value", "op", 1.5, int64(-3), true, uint32(1))
	f.Add("<&>", "\u2028\xff\x00", "\"\\", 1e-7, int64(0), false, uint32(0))
	f.Add("", "", "", 1e21, int64(math.MaxInt64), true, uint32(math.MaxUint32))
	f.Fuzz(func(t *testing.T, k, v, op string, fl float64, i int64, bl bool, flags uint32) {
		if math.IsNaN(fl) || math.IsInf(fl, 0) {
			fl = 0
		}
		kvs := []uiKeyValue{{Key: k, Type: "string", Value: v}, {Key: v, Type: "float64", Value: fl},
			{Key: op, Type: "int64", Value: i}, {Key: k + v, Type: "bool", Value: bl}}
		tr := uiTrace{TraceID: k, Processes: map[string]uiProcess{v: {ServiceName: op, Tags: kvs}, k: {ServiceName: v}},
			Warnings: []string{v, op},
			Spans: []uiSpan{{TraceID: k, SpanID: v, Flags: flags, OperationName: op, StartTime: uint64(i), Duration: uint64(fl),
				References: []uiReference{{RefType: op, TraceID: k, SpanID: v}}, Tags: kvs,
				Logs: []uiLog{{Timestamp: uint64(flags), Fields: kvs}}, ProcessID: v, Warnings: []string{k}}}}
		checkSame(t, []uiTrace{tr}, []respError{{Code: int(flags), Msg: v, TraceID: k}})
	})
}
