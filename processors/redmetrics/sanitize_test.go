package redmetrics

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/meshlens/meshlens/model"
)

func TestSanitizeLabels(t *testing.T) {
	long := strings.Repeat("é", MaxLabelValueBytes) // 2 bytes per rune
	for _, tc := range []struct {
		name, in, want string
	}{
		{"clean value kept", "reviews", "reviews"},
		{"invalid UTF-8 replaced", "rev\xffiews\xc3\x28", "rev\uFFFDiews\uFFFD("},
		{"surrogate half replaced", "a\xed\xa0\x80b", "a\uFFFDb"},
		{"long value cut at a rune boundary", long, long[:MaxLabelValueBytes]},
		{"long ASCII cut", strings.Repeat("x", 1<<20), strings.Repeat("x", MaxLabelValueBytes)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := sanitizeLabels(labels.FromStrings("__name__", "m", "destination_service_name", tc.in)).Get("destination_service_name")
			if got != tc.want {
				t.Fatalf("got %.60q (%d bytes), want %.60q (%d bytes)", got, len(got), tc.want, len(tc.want))
			}
			if !utf8.ValidString(got) || len(got) > MaxLabelValueBytes {
				t.Fatalf("unsafe value: %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
			}
		})
	}
}

// TestHostileLabelValuesReachTheTSDBSanitized: calls whose names carry
// invalid UTF-8 or a megabyte of text are all counted, under label values
// that are valid UTF-8 and at most MaxLabelValueBytes long.
func TestHostileLabelValuesReachTheTSDBSanitized(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	a := New(DefaultConfig(), s, nil, nil, slog.New(slog.DiscardHandler))
	huge := strings.Repeat("a", 1<<20)
	calls := []model.Call{
		call("product\xffpage", "reviews", model.DetectServer, 200, time.Millisecond),
		call("productpage", huge, model.DetectServer, 200, time.Millisecond),
		call("productpage", "reviews", model.DetectServer, 200, time.Millisecond),
	}
	calls[2].Endpoint = "GET:/" + huge
	if err := a.ConsumeCalls(context.Background(), calls); err != nil {
		t.Fatal(err)
	}
	ts := time.Now().Truncate(time.Second)
	if err := a.Flush(context.Background(), ts); err != nil {
		t.Fatal(err)
	}
	if got := scalarOf(t, instant(t, s, `sum(meshlens_service_calls_total)`, ts), ""); got != 3 {
		t.Fatalf("%v calls counted, want 3 (none lost to sanitizing)", got)
	}
	if got := scalarOf(t, instant(t, s, `sum(meshlens_service_calls_total{service="`+strings.Repeat("a", MaxLabelValueBytes)+`"})`, ts), ""); got != 1 {
		t.Fatalf("megabyte service name: %v calls under the cut name, want 1", got)
	}
	if got := scalarOf(t, instant(t, s, `sum(istio_requests_total{source_workload="product\uFFFDpage-v1"})`, ts), ""); got != 1 {
		t.Fatalf("invalid UTF-8 workload: %v calls under the U+FFFD name, want 1", got)
	}
	for _, smp := range instant(t, s, `{__name__=~".+"}`, ts) {
		smp.Metric.Range(func(l labels.Label) {
			if !utf8.ValidString(l.Value) || len(l.Value) > MaxLabelValueBytes {
				t.Errorf("series %s: label %s unsafe (%d bytes)", smp.Metric.Get("__name__"), l.Name, len(l.Value))
			}
		})
	}
}
