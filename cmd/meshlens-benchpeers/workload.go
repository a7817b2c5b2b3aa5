package main

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	zipkin "github.com/openzipkin/zipkin-go/model"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshlens/meshlens/demo"
)

// span is the protocol-neutral form every workload is generated in, so that
// OTLP and Zipkin carry exactly the same spans.
type span struct {
	TraceID  [16]byte
	ID       [8]byte
	Parent   [8]byte // zero for a root
	Service  string
	Peer     string // remote service for client spans, "" if none
	Name     string
	Kind     ptrace.SpanKind
	Start    time.Time
	Duration time.Duration
	Error    bool
	Attrs    map[string]string
}

// trace is the spans of one trace.
type trace []span

// workload is a named set of traces.
type workload struct {
	Name        string
	Description string
	Traces      []trace
}

func (w workload) spans() int {
	n := 0
	for _, t := range w.Traces {
		n += len(t)
	}
	return n
}

// bookinfoWorkload converts about n spans of the demo's Bookinfo mesh simulation into traces.
// Envoy reports both halves of a hop with one span id (shared span context);
// here the server half gets its own id with the client half as parent, the
// form OTLP requires, so that both protocols carry the same spans.
func bookinfoWorkload(n int, seed int64) workload {
	m := demo.NewMesh(seed, time.Now)
	w := workload{Name: "bookinfo", Description: "Istio Bookinfo (demo.Mesh: gateway, productpage, details, reviews v1-v3, ratings, fortio; Envoy tags)"}
	for total := 0; total < n; {
		r := m.Simulate()
		if len(r.Spans) == 0 {
			continue
		}
		var tid [16]byte
		binary.BigEndian.PutUint64(tid[:8], r.TraceID.High)
		binary.BigEndian.PutUint64(tid[8:], r.TraceID.Low)
		var t trace
		for _, s := range r.Spans {
			sm := s.Model
			sp := span{TraceID: tid, Service: sm.LocalEndpoint.ServiceName, Name: sm.Name, Start: sm.Timestamp,
				Duration: sm.Duration, Attrs: map[string]string{}}
			binary.BigEndian.PutUint64(sp.ID[:], uint64(sm.ID))
			if sm.ParentID != nil {
				binary.BigEndian.PutUint64(sp.Parent[:], uint64(*sm.ParentID))
			}
			switch sm.Kind {
			case zipkin.Client:
				sp.Kind = ptrace.SpanKindClient
				if sm.RemoteEndpoint != nil {
					sp.Peer = sm.RemoteEndpoint.ServiceName
				}
			case zipkin.Server:
				sp.Kind = ptrace.SpanKindServer
				sp.Parent = sp.ID
				binary.BigEndian.PutUint64(sp.ID[:], uint64(sm.ID)^0x5bd1e9955bd1e995)
			default:
				sp.Kind = ptrace.SpanKindInternal
			}
			for k, v := range sm.Tags {
				if k == "error" {
					sp.Error = true
					continue
				}
				sp.Attrs[k] = v
			}
			t = append(t, sp)
		}
		w.Traces = append(w.Traces, t)
		total += len(t)
	}
	return w
}

// syntheticWorkload is about n spans of a 100-service mesh: a fixed random call graph (each
// service calls 0-3 services with a higher index, so it is acyclic), traces
// that walk it from one of five entry services, log-normal latencies and ~2%
// errors.
func syntheticWorkload(n, services int, seed uint64) workload {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	name := func(i int) string { return fmt.Sprintf("svc-%03d", i) }
	calls := make([][]int, services)
	for i := range services {
		if i >= services-10 {
			continue // leaves: databases and caches
		}
		for range rng.IntN(4) {
			calls[i] = append(calls[i], i+1+rng.IntN(min(services-i-1, 25)))
		}
	}
	ops := []string{"GET /api/items/{id}", "POST /api/orders", "GET /api/users/{id}", "GET /healthz", "PUT /api/cart"}
	w := workload{Name: "synthetic100", Description: fmt.Sprintf("%d-service synthetic mesh (acyclic call graph, fan-out 0-3, depth <= 6, 2%% errors)", services)}
	now := time.Now()
	newID := func() (id [8]byte) { binary.BigEndian.PutUint64(id[:], rng.Uint64()|1); return }
	for total := 0; total < n; {
		var tid [16]byte
		binary.BigEndian.PutUint64(tid[:8], rng.Uint64())
		binary.BigEndian.PutUint64(tid[8:], rng.Uint64()|1)
		var t trace
		start := now.Add(-time.Duration(rng.IntN(60_000)) * time.Millisecond)
		var visit func(svc int, parent [8]byte, at time.Time, depth int) (time.Duration, bool)
		visit = func(svc int, parent [8]byte, at time.Time, depth int) (time.Duration, bool) {
			op := ops[(svc+depth)%len(ops)]
			srv := span{TraceID: tid, ID: newID(), Parent: parent, Service: name(svc), Name: op, Kind: ptrace.SpanKindServer, Start: at,
				Attrs: map[string]string{"http.method": op[:3], "http.route": op[4:]}}
			idx := len(t)
			t = append(t, srv)
			self := time.Duration(200+rng.IntN(2000)) * time.Microsecond
			d, failed := self, rng.IntN(100) < 2
			if depth < 6 {
				for _, c := range calls[svc] {
					cl := span{TraceID: tid, ID: newID(), Parent: srv.ID, Service: name(svc), Peer: name(c), Name: "call " + name(c),
						Kind: ptrace.SpanKindClient, Start: at.Add(d), Attrs: map[string]string{"peer.service": name(c)}}
					ci := len(t)
					t = append(t, cl)
					cd, cf := visit(c, cl.ID, at.Add(d+100*time.Microsecond), depth+1)
					cd += 200 * time.Microsecond
					t[ci].Duration, t[ci].Error = cd, cf
					t[ci].Attrs["http.status_code"] = statusOf(cf)
					d += cd
					failed = failed || cf
				}
			}
			t[idx].Duration, t[idx].Error = d, failed
			t[idx].Attrs["http.status_code"] = statusOf(failed)
			return d, failed
		}
		visit(rng.IntN(5), [8]byte{}, start, 0)
		w.Traces = append(w.Traces, t)
		total += len(t)
	}
	return w
}

func statusOf(failed bool) string {
	if failed {
		return "503"
	}
	return "200"
}

// fromPdata turns captured spans (HotROD's) into traces grouped by trace id.
func fromPdata(td ptrace.Traces, name, desc string) workload {
	byID := map[[16]byte]int{}
	w := workload{Name: name, Description: desc}
	rss := td.ResourceSpans()
	for i := range rss.Len() {
		rs := rss.At(i)
		svc := "unknown"
		if v, ok := rs.Resource().Attributes().Get("service.name"); ok {
			svc = v.AsString()
		}
		sss := rs.ScopeSpans()
		for j := range sss.Len() {
			ss := sss.At(j).Spans()
			for k := range ss.Len() {
				s := ss.At(k)
				sp := span{TraceID: s.TraceID(), ID: s.SpanID(), Parent: s.ParentSpanID(), Service: svc, Name: s.Name(), Kind: s.Kind(),
					Start: s.StartTimestamp().AsTime(), Duration: s.EndTimestamp().AsTime().Sub(s.StartTimestamp().AsTime()),
					Error: s.Status().Code() == ptrace.StatusCodeError, Attrs: map[string]string{}}
				s.Attributes().Range(func(k string, v pcommon.Value) bool {
					sp.Attrs[k] = v.AsString()
					if k == "peer.service" {
						sp.Peer = v.AsString()
					}
					return true
				})
				ti, ok := byID[sp.TraceID]
				if !ok {
					ti = len(w.Traces)
					byID[sp.TraceID] = ti
					w.Traces = append(w.Traces, nil)
				}
				w.Traces[ti] = append(w.Traces[ti], sp)
			}
		}
	}
	return w
}

// payload is one pre-encoded request and where the trace ids and span
// timestamps sit in it, so that every send can carry fresh trace ids and,
// optionally, span times moved to the send time, at the cost of a copy.
type payload struct {
	Body   []byte
	Spans  int
	IDs    [][16]byte // template trace ids, in order of first appearance
	offs   []int      // offset of each trace id occurrence
	offIdx []int      // which IDs entry that occurrence is
	hex    bool       // ids are 32 hex digits (Zipkin JSON) rather than 16 raw bytes

	// Timestamps, in the payload's own unit: nanoseconds (OTLP fixed64,
	// little-endian) or microseconds (Zipkin JSON, tsWidth decimal digits).
	tsOffs  []int   // offset of every span start/end and event/annotation time
	tsVals  []int64 // template value at each offset
	tsWidth int     // Zipkin: digits of every value (all the same)
	first   int64   // earliest span start in the template
	latest  int64   // latest span start in the template
	lastEnd int64   // latest span end in the template
}

// zipkinTSWidth is the number of digits of a Zipkin microsecond timestamp
// between 2001-09-09 and 2286-11-20: wide enough for any realistic date, so
// values are rewritten in place.
const zipkinTSWidth = 16

// mix derives the high 8 bytes of a sent trace id from the send sequence, so
// ids are unique per send yet can be recomputed for trace-by-id queries.
func mix(seq uint64) uint64 {
	x := seq + 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// SentID is the trace id template id tid carries in the send numbered seq.
func SentID(tid [16]byte, seq uint64) [16]byte {
	out := tid
	binary.BigEndian.PutUint64(out[:8], binary.BigEndian.Uint64(tid[:8])^mix(seq))
	return out
}

// delta is how far a send at time at moves every timestamp, in the payload's
// unit: the latest span start becomes at. A zero at means no shift
// (template times replayed).
func (p *payload) delta(at time.Time) int64 {
	if at.IsZero() || len(p.tsOffs) == 0 {
		return 0
	}
	if p.hex {
		return at.UnixMicro() - p.latest
	}
	return at.UnixNano() - p.latest
}

// unit is the duration of one timestamp unit of the payload.
func (p *payload) unit() time.Duration {
	if p.hex {
		return time.Microsecond
	}
	return time.Nanosecond
}

// sentWindow is the earliest span start and latest span end of the send
// stamped at time at (zero: the template's).
func (p *payload) sentWindow(at time.Time) (first, last time.Time) {
	d := p.delta(at)
	u := int64(p.unit())
	return time.Unix(0, (p.first+d)*u), time.Unix(0, (p.lastEnd+d)*u)
}

// Stamp writes the body for send seq into dst (grown as needed). With a
// non-zero at, every span start and end and every event (annotation) time
// is moved by the same delta so that the latest span start is at (to the
// microsecond for Zipkin); durations and ordering are kept. A zero at
// replays the template times.
func (p *payload) Stamp(dst []byte, seq uint64, at time.Time) []byte {
	dst = append(dst[:0], p.Body...)
	for i, off := range p.offs {
		id := SentID(p.IDs[p.offIdx[i]], seq)
		if p.hex {
			hex.Encode(dst[off:off+32], id[:])
		} else {
			copy(dst[off:off+16], id[:])
		}
	}
	d := p.delta(at)
	if d == 0 {
		return dst
	}
	for i, off := range p.tsOffs {
		v := p.tsVals[i] + d
		if !p.hex {
			binary.LittleEndian.PutUint64(dst[off:off+8], uint64(v))
			continue
		}
		var buf [20]byte
		s := strconv.AppendInt(buf[:0], v, 10)
		if len(s) != p.tsWidth {
			// Only a clock before 2001 or after 2286 gets here; a
			// different width would corrupt the JSON.
			panic(fmt.Sprintf("meshlens-benchpeers: shifted Zipkin timestamp %d has %d digits, the template's %d", v, len(s), p.tsWidth))
		}
		copy(dst[off:], s)
	}
	return dst
}

func (p *payload) locate() error {
	for i, id := range p.IDs {
		needle := id[:]
		if p.hex {
			needle = []byte(hex.EncodeToString(id[:]))
		}
		found := 0
		for from := 0; ; {
			j := bytes.Index(p.Body[from:], needle)
			if j < 0 {
				break
			}
			p.offs = append(p.offs, from+j)
			p.offIdx = append(p.offIdx, i)
			from += j + len(needle)
			found++
		}
		if found == 0 {
			return fmt.Errorf("trace id %x not found in its encoded payload", id)
		}
	}
	if p.hex {
		return p.locateZipkinTimes()
	}
	return p.locateOTLPTimes()
}

// Protobuf field numbers of the OTLP trace messages walked by locateOTLPTimes.
const (
	fieldRequestResourceSpans = 1 // ExportTraceServiceRequest / TracesData
	fieldResourceScopeSpans   = 2 // ResourceSpans
	fieldScopeSpans           = 2 // ScopeSpans
	fieldSpanStart            = 7 // Span.start_time_unix_nano, fixed64
	fieldSpanEnd              = 8 // Span.end_time_unix_nano, fixed64
	fieldSpanEvents           = 11
	fieldEventTime            = 1 // Span.Event.time_unix_nano, fixed64
)

// walkProto calls fn for every field of the message b, which starts at
// offset base of the whole body; val is the field's value (for bytes, its
// payload) and at its offset in the body.
func walkProto(b []byte, base int, fn func(num protowire.Number, typ protowire.Type, val []byte, at int) error) error {
	for i := 0; i < len(b); {
		num, typ, n := protowire.ConsumeTag(b[i:])
		if n < 0 {
			return fmt.Errorf("offset %d: %w", base+i, protowire.ParseError(n))
		}
		i += n
		m := protowire.ConsumeFieldValue(num, typ, b[i:])
		if m < 0 {
			return fmt.Errorf("offset %d: field %d: %w", base+i, num, protowire.ParseError(m))
		}
		val, at := b[i:i+m], base+i
		if typ == protowire.BytesType {
			v, k := protowire.ConsumeBytes(b[i:])
			if k < 0 {
				return fmt.Errorf("offset %d: field %d: %w", base+i, num, protowire.ParseError(k))
			}
			val, at = v, base+i+(k-len(v))
		}
		if err := fn(num, typ, val, at); err != nil {
			return err
		}
		i += m
	}
	return nil
}

// locateOTLPTimes records the offsets of every span's start and end time and
// every event's time by walking the protobuf (request -> ResourceSpans ->
// ScopeSpans -> Span [-> Event]).
func (p *payload) locateOTLPTimes() error {
	p.first, p.latest, p.lastEnd = math.MaxInt64, math.MinInt64, math.MinInt64
	fixed := func(val []byte, at int) {
		p.tsOffs = append(p.tsOffs, at)
		p.tsVals = append(p.tsVals, int64(binary.LittleEndian.Uint64(val)))
	}
	nested := func(want protowire.Number, inner func([]byte, int) error) func(protowire.Number, protowire.Type, []byte, int) error {
		return func(num protowire.Number, typ protowire.Type, val []byte, at int) error {
			if num != want || typ != protowire.BytesType {
				return nil
			}
			return inner(val, at)
		}
	}
	spans := 0
	span := func(b []byte, base int) error {
		spans++
		var start, end int64
		var haveStart, haveEnd bool
		err := walkProto(b, base, func(num protowire.Number, typ protowire.Type, val []byte, at int) error {
			switch {
			case (num == fieldSpanStart || num == fieldSpanEnd) && typ == protowire.Fixed64Type:
				fixed(val, at)
				v := p.tsVals[len(p.tsVals)-1]
				if num == fieldSpanStart {
					start, haveStart = v, true
				} else {
					end, haveEnd = v, true
				}
			case num == fieldSpanEvents && typ == protowire.BytesType:
				return walkProto(val, at, func(num protowire.Number, typ protowire.Type, val []byte, at int) error {
					if num == fieldEventTime && typ == protowire.Fixed64Type {
						fixed(val, at)
					}
					return nil
				})
			}
			return nil
		})
		if err != nil {
			return err
		}
		if !haveStart || !haveEnd {
			return fmt.Errorf("span %d has no start or end time", spans)
		}
		p.first, p.latest, p.lastEnd = min(p.first, start), max(p.latest, start), max(p.lastEnd, end)
		return nil
	}
	scope := func(b []byte, base int) error { return walkProto(b, base, nested(fieldScopeSpans, span)) }
	resource := func(b []byte, base int) error { return walkProto(b, base, nested(fieldResourceScopeSpans, scope)) }
	if err := walkProto(p.Body, 0, nested(fieldRequestResourceSpans, resource)); err != nil {
		return fmt.Errorf("walking OTLP payload: %w", err)
	}
	if spans != p.Spans {
		return fmt.Errorf("found %d spans with times in the OTLP payload, encoded %d", spans, p.Spans)
	}
	return nil
}

// locateZipkinTimes records where every span's and annotation's "timestamp"
// value sits in the Zipkin v2 JSON list, from the decoder's token stream,
// and checks the positions against an independent decode.
func (p *payload) locateZipkinTimes() error {
	type frame struct {
		obj     bool
		wantKey bool
		key     string // in an object: the key of the current value
	}
	var (
		stack     []frame
		spanStart []int64 // span-level timestamps, in order
	)
	dec := json.NewDecoder(bytes.NewReader(p.Body))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("scanning Zipkin payload: %w", err)
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			if n := len(stack); n > 0 && stack[n-1].obj {
				stack[n-1].wantKey = true
			}
			continue
		}
		if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].wantKey {
			stack[n-1].key, stack[n-1].wantKey = tok.(string), false
			continue
		}
		switch v := tok.(type) {
		case json.Delim: // '{' or '['
			stack = append(stack, frame{obj: v == '{', wantKey: v == '{'})
			continue
		case json.Number:
			n := len(stack)
			// [ {"timestamp": …} ] or [ {"annotations": [ {"timestamp": …} ]} ]
			spanLevel := n == 2 && !stack[0].obj && stack[1].key == "timestamp"
			annotation := n == 4 && !stack[0].obj && stack[1].key == "annotations" && !stack[2].obj && stack[3].key == "timestamp"
			if spanLevel || annotation {
				if err := p.zipkinTime(v, int(dec.InputOffset())); err != nil {
					return err
				}
				if spanLevel {
					spanStart = append(spanStart, p.tsVals[len(p.tsVals)-1])
				}
			}
		}
		if n := len(stack); n > 0 && stack[n-1].obj {
			stack[n-1].wantKey = true
		}
	}
	var check []struct {
		Timestamp   int64 `json:"timestamp"`
		Duration    int64 `json:"duration"`
		Annotations []struct {
			Timestamp int64 `json:"timestamp"`
		} `json:"annotations"`
	}
	if err := json.Unmarshal(p.Body, &check); err != nil {
		return err
	}
	if len(check) != p.Spans || len(spanStart) != len(check) {
		return fmt.Errorf("Zipkin payload: %d spans encoded, %d decoded, %d timestamps found", p.Spans, len(check), len(spanStart))
	}
	p.first, p.latest, p.lastEnd = math.MaxInt64, math.MinInt64, math.MinInt64
	want := make([]int64, 0, len(p.tsVals))
	for i, s := range check {
		if s.Timestamp != spanStart[i] {
			return fmt.Errorf("Zipkin span %d: timestamp %d decoded, %d located", i, s.Timestamp, spanStart[i])
		}
		want = append(want, s.Timestamp)
		for _, a := range s.Annotations {
			want = append(want, a.Timestamp)
		}
		p.first, p.latest, p.lastEnd = min(p.first, s.Timestamp), max(p.latest, s.Timestamp), max(p.lastEnd, s.Timestamp+s.Duration)
	}
	if len(want) != len(p.tsVals) {
		return fmt.Errorf("Zipkin payload: %d timestamps decoded, %d located", len(want), len(p.tsVals))
	}
	for i, v := range want {
		if p.tsVals[i] != v {
			return fmt.Errorf("Zipkin timestamp %d: %d decoded, %d located", i, v, p.tsVals[i])
		}
	}
	return nil
}

// zipkinTime records the timestamp num that ends at offset end of the body.
func (p *payload) zipkinTime(num json.Number, end int) error {
	lit := num.String()
	start := end - len(lit)
	if start < 0 || string(p.Body[start:end]) != lit {
		return fmt.Errorf("Zipkin timestamp %s not at offset %d", lit, start)
	}
	v, err := strconv.ParseInt(lit, 10, 64)
	if err != nil || strconv.FormatInt(v, 10) != lit {
		return fmt.Errorf("Zipkin timestamp %q is not a plain integer", lit)
	}
	if len(lit) != zipkinTSWidth {
		return fmt.Errorf("Zipkin timestamp %s has %d digits, want %d to rewrite it in place", lit, len(lit), zipkinTSWidth)
	}
	p.tsOffs = append(p.tsOffs, start)
	p.tsVals = append(p.tsVals, v)
	p.tsWidth = len(lit)
	return nil
}

// batches groups whole traces into requests of about batchSpans spans.
func batches(w workload, batchSpans int) [][]trace {
	var out [][]trace
	var cur []trace
	n := 0
	for _, t := range w.Traces {
		cur = append(cur, t)
		n += len(t)
		if n >= batchSpans {
			out = append(out, cur)
			cur, n = nil, 0
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// encodeOTLP builds OTLP ExportTraceServiceRequest protobufs, one resource
// per service in each request.
func encodeOTLP(w workload, batchSpans int) ([]*payload, error) {
	var out []*payload
	for _, b := range batches(w, batchSpans) {
		td := ptrace.NewTraces()
		res := map[string]ptrace.SpanSlice{}
		p := &payload{}
		for _, t := range b {
			p.IDs = append(p.IDs, t[0].TraceID)
			for _, s := range t {
				ss, ok := res[s.Service]
				if !ok {
					rs := td.ResourceSpans().AppendEmpty()
					rs.Resource().Attributes().PutStr("service.name", s.Service)
					sc := rs.ScopeSpans().AppendEmpty()
					sc.Scope().SetName("meshlens-benchpeers")
					ss = sc.Spans()
					res[s.Service] = ss
				}
				o := ss.AppendEmpty()
				o.SetTraceID(s.TraceID)
				o.SetSpanID(s.ID)
				o.SetParentSpanID(s.Parent)
				o.SetName(s.Name)
				o.SetKind(s.Kind)
				o.SetStartTimestamp(pcommon.NewTimestampFromTime(s.Start))
				o.SetEndTimestamp(pcommon.NewTimestampFromTime(s.Start.Add(s.Duration)))
				if s.Error {
					o.Status().SetCode(ptrace.StatusCodeError)
				}
				if s.Peer != "" {
					o.Attributes().PutStr("peer.service", s.Peer)
				}
				for k, v := range s.Attrs {
					if k != "peer.service" {
						o.Attributes().PutStr(k, v)
					}
				}
				p.Spans++
			}
		}
		body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
		if err != nil {
			return nil, err
		}
		p.Body = body
		if err := p.locate(); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// encodeZipkin builds Zipkin v2 JSON span lists with zipkin-go's model.
func encodeZipkin(w workload, batchSpans int) ([]*payload, error) {
	var out []*payload
	for _, b := range batches(w, batchSpans) {
		var list []zipkin.SpanModel
		p := &payload{hex: true}
		for _, t := range b {
			p.IDs = append(p.IDs, t[0].TraceID)
			for _, s := range t {
				sm := zipkin.SpanModel{
					SpanContext: zipkin.SpanContext{
						TraceID: zipkin.TraceID{High: binary.BigEndian.Uint64(s.TraceID[:8]), Low: binary.BigEndian.Uint64(s.TraceID[8:])},
						ID:      zipkin.ID(binary.BigEndian.Uint64(s.ID[:])),
					},
					Name:          s.Name,
					Timestamp:     s.Start,
					Duration:      s.Duration,
					LocalEndpoint: &zipkin.Endpoint{ServiceName: s.Service},
					Tags:          make(map[string]string, len(s.Attrs)+1),
				}
				if s.Parent != ([8]byte{}) {
					pid := zipkin.ID(binary.BigEndian.Uint64(s.Parent[:]))
					sm.ParentID = &pid
				}
				switch s.Kind {
				case ptrace.SpanKindClient:
					sm.Kind = zipkin.Client
				case ptrace.SpanKindServer:
					sm.Kind = zipkin.Server
				case ptrace.SpanKindProducer:
					sm.Kind = zipkin.Producer
				case ptrace.SpanKindConsumer:
					sm.Kind = zipkin.Consumer
				}
				if s.Peer != "" {
					sm.RemoteEndpoint = &zipkin.Endpoint{ServiceName: s.Peer}
				}
				for k, v := range s.Attrs {
					sm.Tags[k] = v
				}
				if s.Error {
					sm.Tags["error"] = "true"
				}
				list = append(list, sm)
				p.Spans++
			}
		}
		body, err := json.Marshal(list)
		if err != nil {
			return nil, err
		}
		p.Body = body
		if err := p.locate(); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// traceIDHex formats an id as the query APIs expect it.
func traceIDHex(id [16]byte) string { return hex.EncodeToString(id[:]) }
