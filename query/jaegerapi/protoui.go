package jaegerapi

import (
	"cmp"
	"encoding/base64"
	"math"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshlens/meshlens/storage/tracestore"
)

// A stored trace is decoded from its OTLP protobuf straight into the UI
// model. Through pdata, a search at 10M stored spans spent a fifth of its
// CPU decoding, and allocated about as much again as the conversion to
// the UI model did; every 180 MB allocated is a garbage collection over
// the ~190 MB metrics head, ~150 ms of the one core, and those cycles were
// the search tail (docs/tracestore.md).
//
// uiFromStored handles what meshlens stores: chunks pdata marshalled.
// Anything else (array and map values, a message field given twice,
// fields it does not know, anything malformed) makes it give up, and the
// trace goes through pdata and toUI. FuzzUIFromStoredMatchesPdata checks
// that whenever it does not give up its answer is exactly toUI's.

// uiFromStored converts st as toUI(st.Trace(nil), keepShared) does; ok
// is false when it gave up and toUI must answer instead.
func uiFromStored(st *tracestore.StoredTrace, keepShared bool) (out uiTrace, ok bool) {
	var d storedDecoder
	return d.ui(st, keepShared)
}

// ui is uiFromStored reusing what d allocated for earlier traces.
func (d *storedDecoder) ui(st *tracestore.StoredTrace, keepShared bool) (out uiTrace, ok bool) {
	d.traceID, d.traceHex = st.ID, tracestore.TraceIDString(st.ID)
	d.spans, d.kept, d.orders = d.spans[:0], d.kept[:0], d.orders[:0]
	if d.latest == nil {
		d.latest = map[tracestore.SpanKey]int{}
	}
	clear(d.latest)
	for _, chunk := range st.Chunks {
		first := len(d.spans)
		if !d.chunk(chunk) {
			return uiTrace{}, false
		}
		// A later copy of a span replaces the earlier one in its
		// place, as StoredTrace.Trace does.
		for i := first; i < len(d.spans); i++ {
			k := d.spans[i].key
			if at, ok := d.latest[k]; ok {
				d.kept[at] = i
				continue
			}
			d.latest[k] = len(d.kept)
			d.kept = append(d.kept, i)
		}
	}
	if len(d.kept) == 0 {
		return uiTrace{}, false
	}
	out = uiTrace{TraceID: d.traceHex, Processes: map[string]uiProcess{}}
	n := len(d.kept)
	if st.MaxSpans > 0 {
		n = min(n, st.MaxSpans)
	}
	if len(d.kept) > n {
		out.Warnings = []string{tracestore.TruncatedWarning(len(d.kept), n)}
	}
	// Group the spans by resource and scope in order of appearance, as
	// tracestore.Assembler does, and name the processes in group order.
	groups := map[uint64]int{}
	var groupPID []string
	pids := processIDs{names: map[string]string{}, procs: out.Processes}
	for pos, i := range d.kept[:n] {
		s := &d.spans[i]
		g, ok := groups[s.scope.hash]
		if !ok {
			g = len(groupPID)
			groups[s.scope.hash] = g
			groupPID = append(groupPID, pids.id(s.scope.res.process()))
		}
		d.orders = append(d.orders, order{micros(s.key.Start), g, pos})
	}
	orders := d.orders
	// toUI sorts stably by start time spans listed group by group.
	slices.SortFunc(orders, func(a, b order) int {
		if c := cmp.Compare(a.start, b.start); c != 0 {
			return c
		}
		if c := cmp.Compare(a.group, b.group); c != 0 {
			return c
		}
		return cmp.Compare(a.pos, b.pos)
	})
	// The lazy spans of all the answer's traces share one array (a
	// trace's stay valid when a later append moves it).
	start := len(d.lazyArena)
	for _, o := range orders {
		s := &d.spans[d.kept[o.pos]]
		d.lazyArena = append(d.lazyArena, lazySpan{scope: s.scope, msg: s.msg, pid: groupPID[o.group]})
	}
	lazy := &lazySpans{dec: spanDecoder{traceID: d.traceID, traceHex: d.traceHex}, spans: d.lazyArena[start:len(d.lazyArena):len(d.lazyArena)]}
	out.lazy = lazy
	if !keepShared && d.sharedIDs(orders[:n]) {
		// Renaming shared span ids needs every span at hand.
		out.materialize()
		dedupeSharedSpanIDs(out.Spans)
	}
	return out, true
}

// sharedIDs reports whether two of the spans have one span id (Zipkin's
// client and server halves).
func (d *storedDecoder) sharedIDs(orders []order) bool {
	if d.ids == nil {
		d.ids = map[pcommon.SpanID]struct{}{}
	}
	clear(d.ids)
	for _, o := range orders {
		id := d.spans[d.kept[o.pos]].key.SpanID
		if _, ok := d.ids[id]; ok {
			return true
		}
		d.ids[id] = struct{}{}
	}
	return false
}

// order places a span in the answer.
type order struct {
	start uint64 // µs, as the answer has it
	group int
	pos   int // in kept: a replaced span keeps the first copy's place
}

// lazySpans are a trace's spans, in answer order, still as protobuf: the
// encoder decodes each into one reused uiSpan as it writes it, so that the
// spans of an answer are never all in memory as Go values (they were a
// third of what a search allocated, and a search's garbage is what starts
// the GC cycles over the metrics head).
type lazySpans struct {
	dec   spanDecoder
	spans []lazySpan
}

type lazySpan struct {
	scope *storedScope
	msg   []byte
	pid   string
}

// fill decodes span i into s, reusing s's slices; the chunk was
// validated when the trace was read, so it cannot fail.
func (l *lazySpans) fill(i int, s *uiSpan) {
	sp := &l.spans[i]
	l.dec.span(sp.scope, sp.msg, s)
	s.ProcessID = sp.pid
}

// materialize decodes lazy spans into t.Spans (for code that needs them
// all: renaming shared ids, encoding/json).
func (t *uiTrace) materialize() {
	if t.lazy == nil {
		return
	}
	t.Spans = make([]uiSpan, len(t.lazy.spans))
	for i := range t.Spans {
		t.lazy.fill(i, &t.Spans[i])
	}
	t.lazy = nil
}

// storedDecoder holds what uiFromStored decoded so far, and its scratch
// space, which a search reuses from trace to trace.
type storedDecoder struct {
	spanDecoder
	spans []storedSpan
	// kept indexes spans: the latest copy of each, in first-seen order.
	kept   []int
	latest map[tracestore.SpanKey]int
	ids    map[pcommon.SpanID]struct{}
	orders []order
	// lazyArena holds the lazy spans of every trace of an answer: reset
	// only once the answer is written.
	lazyArena []lazySpan
}

// reset readies d for another answer, keeping what it allocated but
// dropping its references into the last answer's chunks.
func (d *storedDecoder) reset() {
	clear(d.lazyArena)
	clear(d.spans[:cap(d.spans)])
	d.lazyArena, d.spans = d.lazyArena[:0], d.spans[:0]
}

// spanDecoder decodes spans of one trace.
type spanDecoder struct {
	traceID  pcommon.TraceID
	traceHex string
	attrs    []storedAttr
}

// storedSpan is a span of a chunk, checked but not converted.
type storedSpan struct {
	key   tracestore.SpanKey
	scope *storedScope
	msg   []byte
}

// storedResource is a resource: its attributes as pdata's Map holds them.
type storedResource struct{ attrs []storedAttr }

type storedScope struct {
	res           *storedResource
	name, version string
	hash          uint64
}

// storedAttr is a key and a value of one of the types toKV handles
// without pdata (maps and arrays give up).
type storedAttr struct {
	key string
	typ pcommon.ValueType
	str string // Str; base64 for Bytes
	i   int64
	f   float64
	b   bool
}

// asString is pcommon.Value's AsString.
func (a *storedAttr) asString() string {
	switch a.typ {
	case pcommon.ValueTypeBool:
		return strconv.FormatBool(a.b)
	case pcommon.ValueTypeInt:
		return strconv.FormatInt(a.i, 10)
	case pcommon.ValueTypeDouble:
		return pcommon.NewValueDouble(a.f).AsString()
	}
	return a.str
}

// kv is toKV.
func (a *storedAttr) kv() uiKeyValue {
	switch a.typ {
	case pcommon.ValueTypeBool:
		return uiKeyValue{Key: a.key, Type: "bool", Value: a.b}
	case pcommon.ValueTypeInt:
		return uiKeyValue{Key: a.key, Type: "int64", Value: a.i}
	case pcommon.ValueTypeDouble:
		if math.IsNaN(a.f) || math.IsInf(a.f, 0) {
			return uiKeyValue{Key: a.key, Type: "string", Value: a.asString()}
		}
		return uiKeyValue{Key: a.key, Type: "float64", Value: a.f}
	case pcommon.ValueTypeBytes:
		return uiKeyValue{Key: a.key, Type: "binary", Value: a.str}
	}
	return uiKeyValue{Key: a.key, Type: "string", Value: a.str}
}

// process is toProcess.
func (r *storedResource) process() uiProcess {
	p := uiProcess{ServiceName: tracestore.UnknownService, Tags: make([]uiKeyValue, 0, len(r.attrs))}
	named := false
	for i := range r.attrs {
		a := &r.attrs[i]
		if a.key != tracestore.AttrServiceName {
			p.Tags = append(p.Tags, a.kv())
			continue
		}
		// Map.Get finds the first.
		if !named {
			named = true
			if s := a.asString(); s != "" {
				p.ServiceName = s
			}
		}
	}
	return p
}

// fieldIter walks the fields of a message: each next leaves one in f.
// bad reports a malformed message (or a group, whose handling is pdata's
// own) once next returns false.
type fieldIter struct {
	msg []byte
	f   field
	bad bool
}

// field is one field of a message: its number, wire type, and its varint
// or fixed value or its bytes.
type field struct {
	num protowire.Number
	typ protowire.Type
	u   uint64
	b   []byte
}

func (it *fieldIter) next() bool {
	if len(it.msg) == 0 {
		return false
	}
	num, typ, n := protowire.ConsumeTag(it.msg)
	if n < 0 {
		it.bad = true
		return false
	}
	it.msg = it.msg[n:]
	it.f = field{num: num, typ: typ}
	switch typ {
	case protowire.VarintType:
		it.f.u, n = protowire.ConsumeVarint(it.msg)
	case protowire.Fixed64Type:
		it.f.u, n = protowire.ConsumeFixed64(it.msg)
	case protowire.Fixed32Type:
		var v uint32
		v, n = protowire.ConsumeFixed32(it.msg)
		it.f.u = uint64(v)
	case protowire.BytesType:
		it.f.b, n = protowire.ConsumeBytes(it.msg)
	default:
		n = -1
	}
	if n < 0 {
		it.bad = true
		return false
	}
	it.msg = it.msg[n:]
	return true
}

// is reports whether f is field num of wire type typ.
func (f *field) is(num protowire.Number, typ protowire.Type) bool {
	return f.num == num && f.typ == typ
}

// chunk decodes a TracesData message.
func (d *storedDecoder) chunk(msg []byte) bool {
	it := fieldIter{msg: msg}
	for it.next() {
		if !it.f.is(1, protowire.BytesType) || !d.resourceSpans(it.f.b) {
			return false
		}
	}
	return !it.bad
}

func (d *storedDecoder) resourceSpans(msg []byte) bool {
	res := &storedResource{}
	seenRes := false
	// The resource may follow its scopes on the wire: find it first.
	it := fieldIter{msg: msg}
	for it.next() {
		switch f := &it.f; {
		case f.is(1, protowire.BytesType) && !seenRes:
			seenRes = true
			if !res.decode(f.b) {
				return false
			}
		case f.is(2, protowire.BytesType), f.is(3, protowire.BytesType): // scope_spans, schema_url
		default:
			return false
		}
	}
	if it.bad {
		return false
	}
	it = fieldIter{msg: msg}
	for it.next() {
		if it.f.is(2, protowire.BytesType) && !d.scopeSpans(res, it.f.b) {
			return false
		}
	}
	return true
}

func (r *storedResource) decode(msg []byte) bool {
	it := fieldIter{msg: msg}
	for it.next() {
		switch f := &it.f; {
		case f.is(1, protowire.BytesType):
			var a storedAttr
			if !a.decode(f.b) {
				return false
			}
			r.attrs = append(r.attrs, a)
		case f.is(2, protowire.VarintType): // dropped_attributes_count
		default:
			return false
		}
	}
	return !it.bad
}

func (d *storedDecoder) scopeSpans(res *storedResource, msg []byte) bool {
	sc := &storedScope{res: res}
	h := tracestore.NewScopeHasher()
	for i := range res.attrs {
		h.Attr(res.attrs[i].key, res.attrs[i].typ, res.attrs[i].asString())
	}
	seenScope := false
	it := fieldIter{msg: msg}
	for it.next() {
		switch f := &it.f; {
		case f.is(1, protowire.BytesType) && !seenScope:
			seenScope = true
			if !d.scope(sc, &h, f.b) {
				return false
			}
		case f.is(2, protowire.BytesType), f.is(3, protowire.BytesType): // spans, schema_url
		default:
			return false
		}
	}
	if it.bad {
		return false
	}
	if !seenScope {
		h.Scope("", "")
	}
	sc.hash = h.Sum64()
	it = fieldIter{msg: msg}
	for it.next() {
		if !it.f.is(2, protowire.BytesType) {
			continue
		}
		key, ok := d.span(sc, it.f.b, nil)
		if !ok {
			return false
		}
		d.spans = append(d.spans, storedSpan{key: key, scope: sc, msg: it.f.b})
	}
	return true
}

// scope decodes an InstrumentationScope into sc and h.
func (d *storedDecoder) scope(sc *storedScope, h *tracestore.ScopeHasher, msg []byte) bool {
	d.attrs = d.attrs[:0]
	it := fieldIter{msg: msg}
	for it.next() {
		switch f := &it.f; {
		case f.is(1, protowire.BytesType):
			sc.name = chunkString(f.b)
		case f.is(2, protowire.BytesType):
			sc.version = chunkString(f.b)
		case f.is(3, protowire.BytesType):
			var a storedAttr
			if !a.decode(f.b) {
				return false
			}
			d.attrs = append(d.attrs, a)
		case f.is(4, protowire.VarintType):
		default:
			return false
		}
	}
	if it.bad {
		return false
	}
	h.Scope(sc.name, sc.version)
	for i := range d.attrs {
		h.Attr(d.attrs[i].key, d.attrs[i].typ, d.attrs[i].asString())
	}
	return true
}

// decode decodes a KeyValue.
func (a *storedAttr) decode(msg []byte) bool {
	*a = storedAttr{}
	seenValue := false
	it := fieldIter{msg: msg}
	for it.next() {
		switch f := &it.f; {
		case f.is(1, protowire.BytesType):
			a.key = chunkString(f.b)
		case f.is(2, protowire.BytesType) && !seenValue:
			seenValue = true
			if !a.decodeValue(f.b) {
				return false
			}
		default:
			return false
		}
	}
	return !it.bad
}

// decodeValue decodes an AnyValue: the last of its oneof fields wins, as
// in pdata; no field is an empty value.
func (a *storedAttr) decodeValue(msg []byte) bool {
	it := fieldIter{msg: msg}
	for it.next() {
		a.str, a.i, a.f, a.b = "", 0, 0, false
		switch f := &it.f; {
		case f.is(1, protowire.BytesType):
			a.typ, a.str = pcommon.ValueTypeStr, chunkString(f.b)
		case f.is(2, protowire.VarintType):
			a.typ, a.b = pcommon.ValueTypeBool, f.u != 0
		case f.is(3, protowire.VarintType):
			a.typ, a.i = pcommon.ValueTypeInt, int64(f.u)
		case f.is(4, protowire.Fixed64Type):
			a.typ, a.f = pcommon.ValueTypeDouble, math.Float64frombits(f.u)
		case f.is(7, protowire.BytesType):
			a.typ, a.str = pcommon.ValueTypeBytes, base64.StdEncoding.EncodeToString(f.b)
		default:
			return false // arrays, maps, string indexes
		}
	}
	return !it.bad
}

// chunkString is b as a string, without a copy. b is part of a
// StoredTrace's chunk, in the answer's arena (answerScratch), which
// nothing writes until the pool hands it to another answer, after this
// one is written; so such strings must not outlive the handler (none is
// kept: the answer is written and dropped). Copying the names, tag keys
// and values was most of what a search still allocated.
func chunkString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// id16 and id8 read a trace or span id as pdata does: empty is zero, any
// other length is an error.
func id16(b []byte, id *pcommon.TraceID) bool {
	switch len(b) {
	case 0:
		*id = pcommon.TraceID{}
	case 16:
		copy(id[:], b)
	default:
		return false
	}
	return true
}

func id8(b []byte, id *pcommon.SpanID) bool {
	switch len(b) {
	case 0:
		*id = pcommon.SpanID{}
	case 8:
		copy(id[:], b)
	default:
		return false
	}
	return true
}

// span decodes a Span and returns its key; when out is not nil it also
// converts it into out as toUISpan would, reusing out's slices. Events
// and links are checked either way, since pdata would refuse the chunk.
func (d *spanDecoder) span(sc *storedScope, msg []byte, out *uiSpan) (tracestore.SpanKey, bool) {
	var (
		key             tracestore.SpanKey
		parent          pcommon.SpanID
		name            string
		end             uint64
		status          []byte
		seenStatus      bool
		nLinks, nEvents int
		statusCode      ptrace.StatusCode
		statusMessage   string
		et              errorTag
	)
	d.attrs = d.attrs[:0]
	it := fieldIter{msg: msg}
	for it.next() {
		switch f := &it.f; {
		case f.is(1, protowire.BytesType):
			if !id16(f.b, &key.TraceID) {
				return key, false
			}
		case f.is(2, protowire.BytesType):
			if !id8(f.b, &key.SpanID) {
				return key, false
			}
		case f.is(4, protowire.BytesType):
			if !id8(f.b, &parent) {
				return key, false
			}
		case f.is(5, protowire.BytesType):
			name = chunkString(f.b)
		case f.is(6, protowire.VarintType):
			key.Kind = ptrace.SpanKind(int32(f.u))
		case f.is(7, protowire.Fixed64Type):
			key.Start = pcommon.Timestamp(f.u)
		case f.is(8, protowire.Fixed64Type):
			end = f.u
		case f.is(9, protowire.BytesType):
			var a storedAttr
			if !a.decode(f.b) {
				return key, false
			}
			d.attrs = append(d.attrs, a)
		case f.is(11, protowire.BytesType):
			nEvents++
		case f.is(13, protowire.BytesType):
			nLinks++
		case f.is(15, protowire.BytesType) && !seenStatus:
			seenStatus, status = true, f.b
		case f.is(3, protowire.BytesType), f.is(16, protowire.Fixed32Type), // trace_state, flags
			f.is(10, protowire.VarintType), f.is(12, protowire.VarintType), f.is(14, protowire.VarintType): // dropped counts
		default:
			return key, false
		}
	}
	if it.bad {
		return key, false
	}
	it = fieldIter{msg: status}
	for it.next() {
		switch f := &it.f; {
		case f.is(2, protowire.BytesType):
			statusMessage = chunkString(f.b)
		case f.is(3, protowire.VarintType):
			statusCode = ptrace.StatusCode(int32(f.u))
		default:
			return key, false
		}
	}
	if it.bad {
		return key, false
	}
	if out == nil {
		if nLinks+nEvents > 0 {
			return key, d.eventsAndLinks(msg, nil)
		}
		return key, true
	}
	start := uint64(key.Start)
	spanTID := d.traceHex
	if key.TraceID != d.traceID {
		spanTID = tracestore.TraceIDString(key.TraceID)
	}
	var dur uint64
	if end > start {
		dur = uint64(time.Duration(end - start).Microseconds())
	}
	*out = uiSpan{
		TraceID:       spanTID,
		SpanID:        spanIDString(key.SpanID),
		OperationName: name,
		References:    out.References[:0],
		StartTime:     micros(key.Start),
		Duration:      dur,
		Tags:          out.Tags[:0],
		Logs:          out.Logs[:0],
		Flags:         1,
	}
	// Room for the attributes and the synthetic tags (at most six).
	if need := len(d.attrs) + 6; cap(out.Tags) < need {
		out.Tags = make([]uiKeyValue, 0, need)
	}
	if out.References == nil {
		out.References = []uiReference{}
	}
	if out.Logs == nil {
		out.Logs = []uiLog{}
	}
	if !parent.IsEmpty() {
		out.References = append(out.References, uiReference{RefType: "CHILD_OF", TraceID: spanTID, SpanID: spanIDString(parent)})
	}
	for i := range d.attrs {
		out.Tags = append(out.Tags, d.attrs[i].kv())
		if !et.present && d.attrs[i].key == "error" {
			et = errorTag{present: true, isStr: d.attrs[i].typ == pcommon.ValueTypeStr, str: d.attrs[i].str}
		}
	}
	out.Tags = appendSpanTags(out.Tags, sc.name, sc.version, key.Kind, statusCode, statusMessage, et)
	if nLinks+nEvents > 0 && !d.eventsAndLinks(msg, out) {
		return key, false
	}
	return key, true
}

// eventsAndLinks checks the span's events and links and, when out is not
// nil, appends them as logs and references.
func (d *spanDecoder) eventsAndLinks(msg []byte, out *uiSpan) bool {
	it := fieldIter{msg: msg}
	for it.next() {
		switch f := &it.f; {
		case f.is(11, protowire.BytesType):
			if !d.event(f.b, out) {
				return false
			}
		case f.is(13, protowire.BytesType):
			if !link(f.b, out) {
				return false
			}
		}
	}
	return !it.bad
}

// link checks a Link and appends it to out (when not nil) as a
// FOLLOWS_FROM reference.
func link(msg []byte, out *uiSpan) bool {
	var tid pcommon.TraceID
	var sid pcommon.SpanID
	it := fieldIter{msg: msg}
	for it.next() {
		switch f := &it.f; {
		case f.is(1, protowire.BytesType):
			if !id16(f.b, &tid) {
				return false
			}
		case f.is(2, protowire.BytesType):
			if !id8(f.b, &sid) {
				return false
			}
		case f.is(4, protowire.BytesType):
			var a storedAttr
			if !a.decode(f.b) {
				return false
			}
		case f.is(3, protowire.BytesType), f.is(5, protowire.VarintType), f.is(6, protowire.Fixed32Type):
		default:
			return false
		}
	}
	if it.bad {
		return false
	}
	if out != nil {
		out.References = append(out.References, uiReference{RefType: "FOLLOWS_FROM", TraceID: tracestore.TraceIDString(tid), SpanID: spanIDString(sid)})
	}
	return true
}

// event checks an Event and appends it to out (when not nil) as a log:
// its name as an "event" field, then its attributes.
func (d *spanDecoder) event(msg []byte, out *uiSpan) bool {
	var ts uint64
	var name string
	var l uiLog
	if out != nil {
		l.Fields = []uiKeyValue{}
	}
	it := fieldIter{msg: msg}
	for it.next() {
		switch f := &it.f; {
		case f.is(1, protowire.Fixed64Type):
			ts = f.u
		case f.is(2, protowire.BytesType):
			name = chunkString(f.b)
		case f.is(3, protowire.BytesType):
			var a storedAttr
			if !a.decode(f.b) {
				return false
			}
			if out != nil {
				l.Fields = append(l.Fields, a.kv())
			}
		case f.is(4, protowire.VarintType):
		default:
			return false
		}
	}
	if it.bad {
		return false
	}
	if out != nil {
		l.Timestamp = micros(pcommon.Timestamp(ts))
		if name != "" {
			l.Fields = slices.Insert(l.Fields, 0, uiKeyValue{Key: "event", Type: "string", Value: name})
		}
		out.Logs = append(out.Logs, l)
	}
	return true
}
