package otlp

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// TestHostileInput is the OTLP/HTTP part of docs/hostile-input.md: each
// case asserts the status, the message, how many spans reached the
// pipeline, and that a good request is served afterwards.
func TestHostileInput(t *testing.T) {
	s := &sink{}
	url := startHTTP(t, Config{MaxRequestBytes: 4 << 20, MaxDecompressedBytes: 8 << 20}, s)
	good, _ := ptraceotlp.NewExportRequestFromTraces(sampleTraces(0)).MarshalJSON()
	// A valid request with one attribute value replaced by raw bytes.
	withAttr := func(raw string) []byte {
		return []byte(strings.Replace(string(good), `"stringValue":"ratings"`, `"stringValue":"`+raw+`"`, 1))
	}
	// Spans far in the past (1 ns after 1970) and the future (2100), and
	// a client span starting 10 minutes before its server (clock skew).
	y2100 := pcommon.NewTimestampFromTime(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))
	timed := func(serverStart, clientStart pcommon.Timestamp) []byte {
		td := sampleTraces(0)
		spans := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
		spans.At(0).SetStartTimestamp(serverStart)
		spans.At(0).SetEndTimestamp(serverStart + 5e6)
		spans.At(1).SetStartTimestamp(clientStart)
		spans.At(1).SetEndTimestamp(clientStart + 3e6)
		b, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalJSON()
		return b
	}
	keptAsSent := func(server, client pcommon.Timestamp) func(t *testing.T) {
		return func(t *testing.T) {
			got := s.spans()
			if a, b := got["0000000000000001"].StartTimestamp(), got["0000000000000002"].StartTimestamp(); a != server || b != client {
				t.Errorf("starts %d and %d, want %d and %d as sent", a, b, server, client)
			}
		}
	}
	skewed := pcommon.NewTimestampFromTime(time.Unix(1700000000, 0))
	for _, tc := range []struct {
		name      string
		body      []byte
		want      int
		wantMsg   string
		wantSpans int
		check     func(t *testing.T)
	}{
		{"100k nested arrays", []byte(strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000)), 400, "", 0, nil},
		{"100k nested objects in an attribute", []byte(strings.Replace(string(good), `{"stringValue":"ratings"}`,
			strings.Repeat(`{"kvlistValue":{"values":[{"key":"k","value":`, 20_000)+`{"stringValue":"x"}`+strings.Repeat("}]}}", 20_000), 1)), 400, "", 0, nil},
		{"body over max_request_bytes", []byte(`{"resourceSpans":[` + strings.Repeat(" ", 5<<20) + `]}`), 413, "", 0, nil},
		{"1 MB attribute value kept whole", withAttr(strings.Repeat("v", 1<<20)), 200, "", 2, func(t *testing.T) {
			v, _ := s.spans()["0000000000000002"].Attributes().Get("peer.service")
			if len(v.Str()) != 1<<20 {
				t.Errorf("attribute is %d bytes, want 1 MiB (traces keep values; series labels are cut)", len(v.Str()))
			}
		}},
		{"invalid UTF-8 attribute value replaced", withAttr("rat\xffings"), 200, "", 2, func(t *testing.T) {
			v, _ := s.spans()["0000000000000002"].Attributes().Get("peer.service")
			if !utf8.ValidString(v.Str()) || !strings.Contains(v.Str(), "\uFFFD") {
				t.Errorf("attribute %q, want U+FFFD in place of the bad byte", v.Str())
			}
		}},
		{"timestamps far in the past and future kept as sent", timed(1, y2100), 200, "", 2, keptAsSent(1, y2100)},
		{"clock skew: client before its server kept as sent", timed(skewed, skewed-600e9), 200, "", 2, keptAsSent(skewed, skewed-600e9)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.reset()
			resp, body := post(t, url, "application/json", "", tc.body)
			if resp.StatusCode != tc.want || !strings.Contains(string(body), tc.wantMsg) {
				t.Fatalf("status %d %.300q, want %d containing %q", resp.StatusCode, body, tc.want, tc.wantMsg)
			}
			if n := len(s.spans()); n != tc.wantSpans {
				t.Fatalf("%d spans reached the pipeline, want %d", n, tc.wantSpans)
			}
			if tc.check != nil {
				tc.check(t)
			}
			s.reset()
			if resp, body := post(t, url, "application/json", "", good); resp.StatusCode != 200 || len(s.spans()) != 2 {
				t.Fatalf("good request after the hostile one: %d %s", resp.StatusCode, body)
			}
		})
	}
}
