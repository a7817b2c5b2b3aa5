package main

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	zipkin "github.com/openzipkin/zipkin-go/model"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

const shiftSeq = 777

// otlpWithEvents is an OTLP payload whose spans carry events, which the
// workloads never produce.
func otlpWithEvents(t *testing.T) *payload {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "svc-a")
	ss := rs.ScopeSpans().AppendEmpty().Spans()
	tid := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	base := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	for i := range 3 {
		s := ss.AppendEmpty()
		s.SetTraceID(tid)
		s.SetSpanID([8]byte{byte(i + 1)})
		s.SetName("op")
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(base.Add(time.Duration(i) * time.Millisecond)))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(base.Add(time.Duration(i)*time.Millisecond + 500*time.Microsecond)))
		for j := range i {
			e := s.Events().AppendEmpty()
			e.SetName("retry")
			e.SetTimestamp(pcommon.NewTimestampFromTime(base.Add(time.Duration(i)*time.Millisecond + time.Duration(j+1)*100*time.Microsecond)))
			e.Attributes().PutInt("attempt", int64(j))
		}
	}
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	p := &payload{Body: body, Spans: 3, IDs: [][16]byte{tid}}
	if err := p.locate(); err != nil {
		t.Fatal(err)
	}
	return p
}

func allSpans(td ptrace.Traces) []ptrace.Span {
	var out []ptrace.Span
	rss := td.ResourceSpans()
	for i := range rss.Len() {
		sss := rss.At(i).ScopeSpans()
		for j := range sss.Len() {
			ss := sss.At(j).Spans()
			for k := range ss.Len() {
				out = append(out, ss.At(k))
			}
		}
	}
	return out
}

// Shifting moves every OTLP span start, end and event time by the same
// delta, so that the latest start is the send time, and changes nothing
// else.
func TestStampShiftsOTLP(t *testing.T) {
	otlp, err := encodeOTLP(syntheticWorkload(300, 100, 3), 100)
	if err != nil {
		t.Fatal(err)
	}
	events := otlpWithEvents(t)
	for _, tc := range []struct {
		name  string
		p     *payload
		delta time.Duration // send time minus the template's latest start
	}{
		{"synthetic later", otlp[0], 3*time.Hour + 17*time.Nanosecond},
		{"synthetic earlier", otlp[1], -41 * time.Second},
		{"synthetic same", otlp[2], 0},
		{"events", events, 26*time.Hour + time.Microsecond + 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			at := time.Unix(0, p.latest).Add(tc.delta)
			plain := p.Stamp(nil, shiftSeq, time.Time{})
			body := p.Stamp(nil, shiftSeq, at)
			if len(body) != len(plain) {
				t.Fatalf("stamped length %d, unshifted %d", len(body), len(plain))
			}
			// Only the located fixed64 values may differ.
			mayDiffer := make([]bool, len(body))
			for _, off := range p.tsOffs {
				for i := off; i < off+8; i++ {
					mayDiffer[i] = true
				}
			}
			for i := range body {
				if body[i] != plain[i] && !mayDiffer[i] {
					t.Fatalf("byte %d changed outside the located timestamps", i)
				}
			}
			var um ptrace.ProtoUnmarshaler
			got, err := um.UnmarshalTraces(body)
			if err != nil {
				t.Fatal(err)
			}
			tmpl, err := um.UnmarshalTraces(plain)
			if err != nil {
				t.Fatal(err)
			}
			want := map[[16]byte]bool{}
			for _, id := range p.IDs {
				want[SentID(id, shiftSeq)] = true
			}
			gs, ws := allSpans(got), allSpans(tmpl)
			if len(gs) != p.Spans || len(ws) != p.Spans {
				t.Fatalf("decoded %d and %d spans, payload says %d", len(gs), len(ws), p.Spans)
			}
			d := uint64(tc.delta.Nanoseconds())
			var latest pcommon.Timestamp
			nEvents := 0
			for i, g := range gs {
				w := ws[i]
				if !want[g.TraceID()] {
					t.Fatalf("span %d: trace id %x is not a stamped one", i, g.TraceID())
				}
				if uint64(g.StartTimestamp()) != uint64(w.StartTimestamp())+d || uint64(g.EndTimestamp()) != uint64(w.EndTimestamp())+d {
					t.Fatalf("span %d: start/end %d/%d, want template %d/%d moved by %v", i, g.StartTimestamp(), g.EndTimestamp(), w.StartTimestamp(), w.EndTimestamp(), tc.delta)
				}
				if g.EndTimestamp()-g.StartTimestamp() != w.EndTimestamp()-w.StartTimestamp() {
					t.Fatalf("span %d: duration changed", i)
				}
				if g.TraceID() != w.TraceID() || g.SpanID() != w.SpanID() || g.ParentSpanID() != w.ParentSpanID() || g.Name() != w.Name() ||
					g.Kind() != w.Kind() || g.Status().Code() != w.Status().Code() || !reflect.DeepEqual(g.Attributes().AsRaw(), w.Attributes().AsRaw()) {
					t.Fatalf("span %d: something besides times changed", i)
				}
				if g.Events().Len() != w.Events().Len() {
					t.Fatalf("span %d: %d events, template %d", i, g.Events().Len(), w.Events().Len())
				}
				for j := range g.Events().Len() {
					ge, we := g.Events().At(j), w.Events().At(j)
					if uint64(ge.Timestamp()) != uint64(we.Timestamp())+d {
						t.Fatalf("span %d event %d: time %d, want %d moved by %v", i, j, ge.Timestamp(), we.Timestamp(), tc.delta)
					}
					if ge.Name() != we.Name() || !reflect.DeepEqual(ge.Attributes().AsRaw(), we.Attributes().AsRaw()) {
						t.Fatalf("span %d event %d: something besides the time changed", i, j)
					}
					nEvents++
				}
				latest = max(latest, g.StartTimestamp())
			}
			if tc.name == "events" && nEvents != 3 {
				t.Fatalf("%d events decoded, want 3", nEvents)
			}
			if latest.AsTime() != at.UTC() {
				t.Fatalf("latest span start %s, want the send time %s", latest.AsTime(), at.UTC())
			}
		})
	}
}

// zipkinWithAnnotations is a Zipkin payload whose spans carry annotations.
func zipkinWithAnnotations(t *testing.T, base time.Time) (*payload, error) {
	t.Helper()
	tid := zipkin.TraceID{High: 0x0102030405060708, Low: 0x090a0b0c0d0e0f10}
	var list []zipkin.SpanModel
	for i := range 3 {
		s := zipkin.SpanModel{
			SpanContext:   zipkin.SpanContext{TraceID: tid, ID: zipkin.ID(i + 1)},
			Name:          "op",
			Timestamp:     base.Add(time.Duration(i) * time.Millisecond),
			Duration:      time.Duration(i+1) * 700 * time.Microsecond,
			LocalEndpoint: &zipkin.Endpoint{ServiceName: "svc-a"},
			Tags:          map[string]string{"timestamp": "not a span time", "n": "1234567890123456"},
		}
		for j := range i {
			s.Annotations = append(s.Annotations, zipkin.Annotation{Timestamp: s.Timestamp.Add(time.Duration(j+1) * 100 * time.Microsecond), Value: "retry"})
		}
		list = append(list, s)
	}
	body, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	var id [16]byte
	copy(id[:], []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	p := &payload{Body: body, Spans: 3, IDs: [][16]byte{id}, hex: true}
	return p, p.locate()
}

// The same for Zipkin JSON, in microseconds.
func TestStampShiftsZipkin(t *testing.T) {
	zk, err := encodeZipkin(syntheticWorkload(300, 100, 3), 100)
	if err != nil {
		t.Fatal(err)
	}
	ann, err := zipkinWithAnnotations(t, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		p     *payload
		delta time.Duration // a whole number of microseconds
	}{
		{"synthetic later", zk[0], 3*time.Hour + 17*time.Microsecond},
		{"synthetic earlier", zk[1], -41 * time.Second},
		{"synthetic same", zk[2], 0},
		{"annotations", ann, 26*time.Hour + 5*time.Microsecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			at := time.UnixMicro(p.latest).Add(tc.delta)
			plain := p.Stamp(nil, shiftSeq, time.Time{})
			body := p.Stamp(nil, shiftSeq, at)
			if len(body) != len(plain) {
				t.Fatalf("stamped length %d, unshifted %d", len(body), len(plain))
			}
			var got, tmpl []zipkin.SpanModel
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("%v\n%s", err, body)
			}
			if err := json.Unmarshal(plain, &tmpl); err != nil {
				t.Fatal(err)
			}
			if len(got) != p.Spans || len(tmpl) != p.Spans {
				t.Fatalf("decoded %d and %d spans, payload says %d", len(got), len(tmpl), p.Spans)
			}
			want := map[string]bool{}
			for _, id := range p.IDs {
				want[traceIDHex(SentID(id, shiftSeq))] = true
			}
			var latest time.Time
			for i := range got {
				g, w := got[i], tmpl[i]
				if !want[g.TraceID.String()] {
					t.Fatalf("span %d: trace id %s is not a stamped one", i, g.TraceID)
				}
				if !g.Timestamp.Equal(w.Timestamp.Add(tc.delta)) {
					t.Fatalf("span %d: timestamp %s, want %s moved by %v", i, g.Timestamp, w.Timestamp, tc.delta)
				}
				if len(g.Annotations) != len(w.Annotations) {
					t.Fatalf("span %d: %d annotations, template %d", i, len(g.Annotations), len(w.Annotations))
				}
				for j := range g.Annotations {
					if !g.Annotations[j].Timestamp.Equal(w.Annotations[j].Timestamp.Add(tc.delta)) || g.Annotations[j].Value != w.Annotations[j].Value {
						t.Fatalf("span %d annotation %d: %+v, want %+v moved by %v", i, j, g.Annotations[j], w.Annotations[j], tc.delta)
					}
				}
				// Everything else, durations included, is unchanged.
				g.Timestamp, g.Annotations, w.Timestamp, w.Annotations = time.Time{}, nil, time.Time{}, nil
				if !reflect.DeepEqual(g, w) {
					t.Fatalf("span %d: something besides times changed:\n%+v\n%+v", i, g, w)
				}
				if got[i].Timestamp.After(latest) {
					latest = got[i].Timestamp
				}
			}
			if !latest.Equal(at) {
				t.Fatalf("latest span start %s, want the send time %s", latest, at)
			}
		})
	}
}

// Without a send time nothing but the trace ids changes (-shift-timestamps=false).
func TestStampNoShift(t *testing.T) {
	w := syntheticWorkload(200, 100, 5)
	otlp, zk := encodeBoth(t, w)
	for name, p := range map[string]*payload{"otlp": otlp[0], "zipkin": zk[0]} {
		t.Run(name, func(t *testing.T) {
			body := p.Stamp(nil, shiftSeq, time.Time{})
			for i, off := range p.tsOffs {
				if p.hex {
					if string(body[off:off+p.tsWidth]) != string(p.Body[off:off+p.tsWidth]) {
						t.Fatalf("timestamp %d changed", i)
					}
				} else if string(body[off:off+8]) != string(p.Body[off:off+8]) {
					t.Fatalf("timestamp %d changed", i)
				}
			}
			if len(p.tsOffs) < 2*p.Spans && !p.hex || len(p.tsOffs) < p.Spans {
				t.Fatalf("%d timestamps located for %d spans", len(p.tsOffs), p.Spans)
			}
		})
	}
}

// A Zipkin timestamp that is not 16 digits cannot be rewritten in place:
// locate refuses the payload.
func TestZipkinTimestampWidth(t *testing.T) {
	for _, tc := range []struct {
		name string
		base time.Time
		ok   bool
	}{
		{"2026", time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), true},
		{"1971", time.Date(1971, 1, 1, 0, 0, 0, 0, time.UTC), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := zipkinWithAnnotations(t, tc.base)
			if (err == nil) != tc.ok {
				t.Fatalf("locate: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// The search window covers everything sent: the last hour, or from the
// earliest span start actually sent when that is older.
func TestSearchWindow(t *testing.T) {
	p := &payload{first: 1_000, latest: 61_000, lastEnd: 61_500, tsOffs: []int{0}} // nanoseconds (OTLP); offsets unused here
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		refs      []sentRef
		wantStart time.Time
	}{
		{"nothing sent", nil, now.Add(-time.Hour)},
		{"shifted, within the hour", []sentRef{{At: now.Add(-10 * time.Minute)}, {At: now.Add(-time.Minute)}}, now.Add(-time.Hour)},
		{"shifted, longer ingest", []sentRef{{At: now.Add(-2 * time.Hour)}, {At: now}}, now.Add(-2 * time.Hour).Add(-60 * time.Microsecond).Truncate(time.Millisecond)},
		{"template times", []sentRef{{}}, time.Unix(0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start, end := searchWindow(sentSince([]*payload{p}, tc.refs), now)
			if !start.Equal(tc.wantStart) || !end.Equal(now) {
				t.Fatalf("window %s - %s, want %s - %s", start, end, tc.wantStart, now)
			}
		})
	}
}
