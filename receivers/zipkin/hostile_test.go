package zipkin

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestHostileInput is the Zipkin part of docs/hostile-input.md: each case
// asserts the status, the message, what reached the pipeline, and that a
// good request is served afterwards.
func TestHostileInput(t *testing.T) {
	s := &sink{}
	url := startServer(t, Config{MaxRequestBytes: 4 << 20, MaxDecompressedBytes: 8 << 20}, s)
	span := func(id, svc, tag string, ts int64) string {
		return fmt.Sprintf(`{"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"%s","name":"get","kind":"SERVER","timestamp":%d,"duration":2000,"localEndpoint":{"serviceName":"%s"},"tags":{"k":"%s"}}`, id, ts, svc, tag)
	}
	const now = 1700000000000000
	for _, tc := range []struct {
		name      string
		body      string
		want      int
		wantMsg   string
		wantSpans int
		check     func(t *testing.T)
	}{
		{"100k nested arrays", strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000), 400, "nested deeper than", 0, nil},
		{"100k nested objects in tags", `[{"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"a2fb4a1d1a96d312","tags":` +
			strings.Repeat(`{"a":`, 100_000) + "1" + strings.Repeat("}", 100_000) + `}]`, 400, "nested deeper than", 0, nil},
		{"body over max_request_bytes", "[" + strings.Repeat(" ", 5<<20) + "]", 413, "limit", 0, nil},
		{"1 MB tag value kept whole", "[" + span("a2fb4a1d1a96d312", "svc", strings.Repeat("v", 1<<20), now) + "]", 202, "", 1, func(t *testing.T) {
			if v := attr(s.spans()[0].span.Attributes(), "k"); len(v) != 1<<20 {
				t.Errorf("tag is %d bytes, want 1 MiB (traces keep values; series labels are cut)", len(v))
			}
		}},
		{"invalid UTF-8 replaced", "[" + span("a2fb4a1d1a96d312", "re\xffviews", "v\xc3\x28", now) + "]", 202, "", 1, func(t *testing.T) {
			sp := s.spans()[0]
			if sp.service != "re\uFFFDviews" || attr(sp.span.Attributes(), "k") != "v\uFFFD(" {
				t.Errorf("service %q tag %q, want U+FFFD in place of the bad bytes", sp.service, attr(sp.span.Attributes(), "k"))
			}
		}},
		{"timestamps far in the past and future kept", "[" + span("0000000000000001", "svc", "v", 1) + "," + span("0000000000000002", "svc", "v", 4102444800000000) + "]", 202, "", 2, nil},
		{"negative timestamp dropped, rest kept", "[" + span("0000000000000001", "svc", "v", -5) + "," + span("0000000000000002", "svc", "v", now) + "]", 400, "not a valid count of microseconds", 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.mu.Lock()
			s.got = nil
			s.mu.Unlock()
			code, msg := post(t, url+"/api/v2/spans", "application/json", "", []byte(tc.body))
			if code != tc.want || !strings.Contains(msg, tc.wantMsg) || !utf8.ValidString(msg) {
				t.Fatalf("got %d %.300q, want %d containing %q", code, msg, tc.want, tc.wantMsg)
			}
			if n := len(s.spans()); n != tc.wantSpans {
				t.Fatalf("%d spans reached the pipeline, want %d", n, tc.wantSpans)
			}
			if tc.check != nil {
				tc.check(t)
			}
			s.mu.Lock()
			s.got = nil
			s.mu.Unlock()
			if code, msg := post(t, url+"/api/v2/spans", "application/json", "", []byte(goodV2)); code != 202 || len(s.spans()) != 1 {
				t.Fatalf("good request after the hostile one: %d %s", code, msg)
			}
		})
	}
}
