package pebblestore

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

// TestOpenRejectsOtherFormats: a directory written by format 1 (no
// version key) or by an unknown format must not be read as this one.
func TestOpenRejectsOtherFormats(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(db *pebble.DB) error
		want    string
	}{
		{"format 1 (no version key)", func(db *pebble.DB) error {
			// A format-1 span key: b|bkt|T|trace|1|span|kind|start.
			return db.Set(append(bucketPrefix(nil, 490000), 'T', 1, 2, 3), []byte{1}, pebble.Sync)
		}, "format 1"},
		{"format from the future", func(db *pebble.DB) error {
			return db.Set([]byte{pfxFormat}, []byte{9}, pebble.Sync)
		}, "format [9]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db, err := pebble.Open(dir, &pebble.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.prepare(db); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			s, err := Open(Config{Dir: dir})
			if err == nil {
				s.Close()
				t.Fatal("Open accepted a directory in another format")
			}
			for _, w := range []string{tc.want, dir, "move the directory away"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	// A new directory gets the version and opens again.
	dir := t.TempDir()
	for i := 0; i < 2; i++ {
		s, err := Open(Config{Dir: dir})
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		s.Close()
	}
}

// TestRewriteLastWins: a span written again with other content is returned
// once, with the content of the last write, also after a reopen.
func TestRewriteLastWins(t *testing.T) {
	dir := t.TempDir()
	base := tracestoretest.Base()
	spec := func(status string) tracestoretest.SpanSpec {
		return tracestoretest.SpanSpec{Service: "svc", Trace: tracestoretest.TraceID(5, 5), ID: tracestoretest.SpanID(1),
			Name: "op", Kind: ptrace.SpanKindServer, Start: base, Duration: time.Millisecond,
			Attrs: map[string]any{"http.status_code": status}}
	}
	ctx := context.Background()
	s := openTest(t, Config{Dir: dir})
	for _, st := range []string{"200", "500", "404"} {
		if err := s.WriteTraces(ctx, tracestoretest.Build(spec(st))); err != nil {
			t.Fatal(err)
		}
	}
	check := func(s *Store) {
		t.Helper()
		tr, err := s.GetTrace(ctx, tracestoretest.TraceID(5, 5))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		tracestoretest.EachSpan(tr.Spans, func(_ pcommon.Resource, sp ptrace.Span) {
			v, _ := sp.Attributes().Get("http.status_code")
			got = append(got, v.AsString())
		})
		if !slices.Equal(got, []string{"404"}) {
			t.Errorf("rewritten span read back as %v, want [404]", got)
		}
	}
	check(s)
	s.Close()
	s2 := openTest(t, Config{Dir: dir})
	check(s2)
	// The write after the reopen still wins.
	if err := s2.WriteTraces(ctx, tracestoretest.Build(spec("201"))); err != nil {
		t.Fatal(err)
	}
	tr, _ := s2.GetTrace(ctx, tracestoretest.TraceID(5, 5))
	tracestoretest.EachSpan(tr.Spans, func(_ pcommon.Resource, sp ptrace.Span) {
		if v, _ := sp.Attributes().Get("http.status_code"); v.AsString() != "201" {
			t.Errorf("write after reopen lost: %s", v.AsString())
		}
	})
}

// TestSearchOneSpanMatchesAll: the posting lists say which traces have a
// span with each term, not that one span has them all; the search must
// still check that one span does.
func TestSearchOneSpanMatchesAll(t *testing.T) {
	s := openTest(t, Config{})
	base := tracestoretest.Base()
	ms := time.Millisecond
	td := tracestoretest.Build(
		// Trace 1: svc "a" has the tag, but on a span of "b".
		tracestoretest.SpanSpec{Service: "a", Trace: tracestoretest.TraceID(1, 1), ID: tracestoretest.SpanID(1), Name: "x",
			Kind: ptrace.SpanKindServer, Start: base, Duration: 50 * ms},
		tracestoretest.SpanSpec{Service: "b", Trace: tracestoretest.TraceID(1, 1), ID: tracestoretest.SpanID(2), Name: "y",
			Kind: ptrace.SpanKindServer, Start: base, Duration: 5 * ms, Attrs: map[string]any{"k": "v"}},
		// Trace 2: one span of "a" with the tag, 5ms.
		tracestoretest.SpanSpec{Service: "a", Trace: tracestoretest.TraceID(2, 2), ID: tracestoretest.SpanID(1), Name: "x",
			Kind: ptrace.SpanKindServer, Start: base.Add(-ms), Duration: 5 * ms, Attrs: map[string]any{"k": "v"}},
	)
	if err := s.WriteTraces(context.Background(), td); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		q    tracestore.Query
		want int // number of traces
	}{
		{"service+tag on different spans", tracestore.Query{Service: "a", Tags: map[string]string{"k": "v"}}, 1},
		{"service+tag+duration", tracestore.Query{Service: "a", Tags: map[string]string{"k": "v"}, DurationMin: 10 * ms}, 0},
		{"service duration rounds up, not down", tracestore.Query{Service: "a", DurationMin: 5*ms + 1}, 1},
		{"service duration max", tracestore.Query{Service: "a", DurationMax: 6 * ms}, 1},
		{"operation of another service", tracestore.Query{Service: "a", Operation: "y"}, 0},
		{"no service, tag", tracestore.Query{Tags: map[string]string{"k": "v"}}, 2},
		{"no service, duration", tracestore.Query{DurationMin: 40 * ms}, 1},
		{"window excludes", tracestore.Query{Service: "a", StartMin: base.Add(time.Second)}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ids, err := s.FindTraceIDs(context.Background(), tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if len(ids) != tc.want {
				t.Errorf("%d traces %v, want %d", len(ids), ids, tc.want)
			}
		})
	}
}

func TestPostingsRoundTrip(t *testing.T) {
	cases := []struct {
		name    string
		ps      []posting
		withDur bool
	}{
		{"empty", nil, false},
		{"one at zero", []posting{{0, 0}}, true},
		{"gaps", []posting{{3, 0}, {4, 0}, {300, 0}, {70000, 0}}, false},
		{"durations", []posting{{1, 1}, {2, 1 << 40}, {9, 12345}}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []posting
			err := decodePostings(appendPostings(nil, tc.ps, tc.withDur), tc.withDur, func(p posting) { got = append(got, p) })
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.ps) {
				t.Errorf("got %v, want %v", got, tc.ps)
			}
		})
	}
	if err := decodePostings([]byte{0x80}, false, func(posting) {}); err == nil {
		t.Error("truncated varint decoded without error")
	}
}

func TestChunkHeaderRoundTrip(t *testing.T) {
	links := []linkRec{
		{span: [8]byte{1}, parent: [8]byte{}, kind: 2, start: 1 << 60, svc: 1},
		{span: [8]byte{2}, parent: [8]byte{1}, kind: 3, start: 5, svc: 0},
	}
	v := appendChunk(nil, []string{"a", "b"}, links, []byte("proto"))
	var got []linkRec
	var svcs []string
	proto, err := parseChunk(v, func(l linkRec, svc string) { got = append(got, l); svcs = append(svcs, svc) })
	if err != nil {
		t.Fatal(err)
	}
	if string(proto) != "proto" || !slices.Equal(got, links) || !slices.Equal(svcs, []string{"b", "a"}) {
		t.Errorf("round trip: proto %q links %v svcs %v", proto, got, svcs)
	}
	for _, bad := range [][]byte{nil, {9}, v[:5], {chunkVersion, 1, 5, 'a'}} {
		if _, err := parseChunk(bad, func(linkRec, string) {}); err == nil {
			t.Errorf("corrupt chunk %x parsed without error", bad)
		}
	}
}
