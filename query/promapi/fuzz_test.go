package promapi

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseTime checks that time and duration parameters never panic and
// that what parses as unix seconds round-trips to the millisecond.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"1700000000", "1700000000.123", "-1", "2026-11-27T19:00:00Z", "2026-11-27T19:00:00.5+02:00",
		"1e400", "NaN", "Inf", "", "5m", "1h30m", "0.001", "-0", "9999-12-31T23:59:59Z", minTime.Format("2006-01-02T15:04:05.999999999Z07:00")} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := ParseTime(s)
		if v, ferr := strconv.ParseFloat(s, 64); ferr == nil && err == nil && math.Abs(v) < 1e12 {
			if got, want := tm.UnixMilli(), int64(math.Round(v*1000)); got-want > 1 || want-got > 1 {
				t.Fatalf("%q parsed to %d ms, want %d", s, got, want)
			}
		}
		_, _ = ParseDuration(s)
	})
}

// FuzzJSONString checks the hand-written string encoder against
// encoding/json: valid JSON that decodes to the same text (invalid UTF-8
// replaced by U+FFFD, as encoding/json does).
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "ctl \x00\x01\x1f\n\r\t", "utf8 ü 日本", "bad \xff\xfe", "\u2028\u2029", "<&>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q encodes to invalid JSON %s: %v", s, b, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if !utf8.ValidString(s) {
			// encoding/json replaces each invalid byte; compare with it.
			ref, _ := json.Marshal(s)
			_ = json.Unmarshal(ref, &want)
		}
		if got != want {
			t.Fatalf("%q round-trips to %q, want %q", s, got, want)
		}
	})
}
