package redmetrics

import (
	"strings"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
)

// MaxLabelValueBytes caps a series label value. Label values come from
// the wire (service and workload names, endpoint paths, span names); a
// proxy or SDK sending megabyte-long names would otherwise bloat the TSDB
// index and every query answer.
const MaxLabelValueBytes = 1024

// sanitizeLabels makes ls safe for the TSDB: invalid UTF-8 becomes U+FFFD
// (Prometheus rejects such label values at scrape and in remote write, and
// JSON answers could not carry them), and values longer than
// MaxLabelValueBytes are cut at a rune boundary. It runs once per new
// series, not per sample, and returns ls itself when nothing changes.
func sanitizeLabels(ls labels.Labels) labels.Labels {
	clean := true
	ls.Range(func(l labels.Label) {
		if len(l.Value) > MaxLabelValueBytes || !utf8.ValidString(l.Value) {
			clean = false
		}
	})
	if clean {
		return ls
	}
	b := labels.NewBuilder(ls)
	ls.Range(func(l labels.Label) {
		b.Set(l.Name, sanitizeValue(l.Value))
	})
	return b.Labels()
}

func sanitizeValue(v string) string {
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	if len(v) <= MaxLabelValueBytes {
		return v
	}
	cut := MaxLabelValueBytes
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut]
}
