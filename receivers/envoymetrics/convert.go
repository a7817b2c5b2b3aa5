package envoymetrics

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
)

// emitFunc receives one sample. An error stops the conversion of the
// message (the storage is failing); per-sample refusals are counted by the
// emitter itself and return nil.
type emitFunc func(l labels.Labels, t int64, v float64) error

// converter turns MetricFamilies from one proxy into samples. It is used by
// one stream at a time.
type converter struct {
	names   *nameCache
	proxy   []labels.Label // sorted
	maxName int
	sb      labels.ScratchBuilder
	scratch []labels.Label
	seen    []string
}

// cachedName is the tag extraction of one stat name.
type cachedName struct {
	name string
	tags []tag
	// sortedTags are the tags as labels, deduplicated and sorted by name,
	// for the common case of a metric without labels of its own.
	sortedTags []labels.Label
}

// nameCache holds tag extractions for all streams: proxies send the same
// few thousand names at every flush, and most names recur across the
// proxies of a mesh, so one shared, bounded cache saves both the regexes
// and the memory of a cache per proxy.
type nameCache struct {
	x   *tagExtractor
	max int
	mu  sync.RWMutex
	m   map[string]*cachedName
}

func newNameCache(x *tagExtractor, max int) *nameCache {
	return &nameCache{x: x, max: max, m: map[string]*cachedName{}}
}

func (nc *nameCache) get(stat string) *cachedName {
	nc.mu.RLock()
	cn := nc.m[stat]
	nc.mu.RUnlock()
	if cn != nil {
		return cn
	}
	name, tags := nc.x.Extract(stat)
	cn = &cachedName{name: name, tags: tags, sortedTags: sortedTagLabels(tags)}
	nc.mu.Lock()
	if len(nc.m) >= nc.max {
		// Crude but bounded: names that churn past the cache size just
		// pay for extraction again.
		clear(nc.m)
	}
	nc.m[strings.Clone(stat)] = cn
	nc.mu.Unlock()
	return cn
}

func sortedTagLabels(tags []tag) []labels.Label {
	out := make([]labels.Label, 0, len(tags))
	for _, t := range tags {
		if t.Name == labels.MetricName || slices.ContainsFunc(out, func(l labels.Label) bool { return l.Name == t.Name }) {
			continue
		}
		out = append(out, labels.Label{Name: t.Name, Value: bound(t.Value)})
	}
	slices.SortFunc(out, func(a, b labels.Label) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func newConverter(names *nameCache, p proxyIdentity, maxName int) *converter {
	c := &converter{names: names, maxName: maxName, sb: labels.NewScratchBuilder(16)}
	for _, l := range []labels.Label{
		{Name: LabelInstance, Value: p.Instance}, {Name: LabelNamespace, Value: p.Namespace},
		{Name: LabelService, Value: p.Service}, {Name: LabelWorkload, Value: p.Workload},
	} {
		if l.Value != "" {
			c.proxy = append(c.proxy, l) // already in name order
		}
	}
	return c
}

// errMalformed marks a metric that cannot be stored; the family's other
// metrics are kept.
var errMalformed = errors.New("malformed metric")

// family converts one MetricFamily. It returns how many metrics were
// malformed (and skipped) with the first such error, or a storage error
// from emit.
func (c *converter) family(mf *dto.MetricFamily, defaultTs int64, emit emitFunc) (bad int, firstBad error, err error) {
	stat := mf.GetName()
	if stat == "" {
		return len(mf.GetMetric()), fmt.Errorf("%w: family without a name", errMalformed), nil
	}
	if len(stat) > c.maxName {
		return len(mf.GetMetric()), fmt.Errorf("%w: stat name of %d bytes exceeds %d", errMalformed, len(stat), c.maxName), nil
	}
	// With emit_tags_as_labels Envoy sends the tag-extracted name and the
	// tags as labels: extracting again would misread the shortened name.
	var cn *cachedName
	if hasLabels(mf) {
		cn = &cachedName{name: sanitizeMetricName("envoy_" + stat)}
		if rest, ok := c.names.x.customNamespace(stat); ok {
			cn.name = sanitizeMetricName(rest)
		}
	} else {
		cn = c.names.get(stat)
	}
	for _, m := range mf.GetMetric() {
		ts := m.GetTimestampMs()
		if ts == 0 {
			ts = defaultTs
		}
		if e := c.metric(mf.GetType(), cn, m, ts, emit); e != nil {
			if !errors.Is(e, errMalformed) {
				return bad, firstBad, e
			}
			bad++
			if firstBad == nil {
				firstBad = fmt.Errorf("%s: %w", stat, e)
			}
		}
	}
	return bad, firstBad, nil
}

func hasLabels(mf *dto.MetricFamily) bool {
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) > 0 {
			return true
		}
	}
	return false
}

func (c *converter) metric(typ dto.MetricType, cn *cachedName, m *dto.Metric, ts int64, emit emitFunc) error {
	switch typ {
	case dto.MetricType_COUNTER:
		if m.GetCounter() == nil {
			return fmt.Errorf("%w: counter without a value", errMalformed)
		}
		return emit(c.labels(cn, m, cn.name, "", ""), ts, m.GetCounter().GetValue())
	case dto.MetricType_GAUGE:
		if m.GetGauge() == nil {
			return fmt.Errorf("%w: gauge without a value", errMalformed)
		}
		return emit(c.labels(cn, m, cn.name, "", ""), ts, m.GetGauge().GetValue())
	case dto.MetricType_UNTYPED:
		if m.GetUntyped() == nil {
			return fmt.Errorf("%w: untyped metric without a value", errMalformed)
		}
		return emit(c.labels(cn, m, cn.name, "", ""), ts, m.GetUntyped().GetValue())
	case dto.MetricType_SUMMARY:
		s := m.GetSummary()
		if s == nil {
			return fmt.Errorf("%w: summary without data", errMalformed)
		}
		for _, q := range s.GetQuantile() {
			if err := emit(c.labels(cn, m, cn.name, "quantile", labels.FormatOpenMetricsFloat(q.GetQuantile())), ts, q.GetValue()); err != nil {
				return err
			}
		}
		if err := emit(c.labels(cn, m, cn.name+"_sum", "", ""), ts, s.GetSampleSum()); err != nil {
			return err
		}
		return emit(c.labels(cn, m, cn.name+"_count", "", ""), ts, float64(s.GetSampleCount()))
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		h := m.GetHistogram()
		if h == nil {
			return fmt.Errorf("%w: histogram without data", errMalformed)
		}
		count := float64(h.GetSampleCount())
		if h.SampleCountFloat != nil {
			count = h.GetSampleCountFloat()
		}
		sawInf := false
		for _, b := range h.GetBucket() {
			ub := b.GetUpperBound()
			if math.IsNaN(ub) {
				return fmt.Errorf("%w: histogram bucket with NaN upper bound", errMalformed)
			}
			sawInf = sawInf || math.IsInf(ub, 1)
			v := float64(b.GetCumulativeCount())
			if b.CumulativeCountFloat != nil {
				v = b.GetCumulativeCountFloat()
			}
			if err := emit(c.labels(cn, m, cn.name+"_bucket", "le", labels.FormatOpenMetricsFloat(ub)), ts, v); err != nil {
				return err
			}
		}
		// Envoy's Prometheus endpoint always shows the +Inf bucket; the
		// metrics service leaves it implicit in sample_count.
		if !sawInf {
			if err := emit(c.labels(cn, m, cn.name+"_bucket", "le", "+Inf"), ts, count); err != nil {
				return err
			}
		}
		if err := emit(c.labels(cn, m, cn.name+"_sum", "", ""), ts, h.GetSampleSum()); err != nil {
			return err
		}
		return emit(c.labels(cn, m, cn.name+"_count", "", ""), ts, count)
	}
	return fmt.Errorf("%w: unknown metric type %d", errMalformed, int32(typ))
}

// labels builds the series labels: name, the proxy identity, the extracted
// tags, the metric's own labels, and one extra (le or quantile). When a
// name repeats, the earlier source wins, except that a metric label that
// would hide a proxy label is kept as exported_<name>, as Prometheus does
// for scraped labels that clash with target labels.
func (c *converter) labels(cn *cachedName, m *dto.Metric, name, extraName, extraValue string) labels.Labels {
	if len(m.GetLabel()) == 0 && cn.sortedTags != nil {
		return c.fastLabels(c.withProxy(cn.sortedTags), name, extraName, extraValue)
	}
	c.sb.Reset()
	c.seen = c.seen[:0]
	add := func(n, v string) {
		for _, s := range c.seen {
			if s == n {
				return
			}
		}
		c.seen = append(c.seen, n)
		c.sb.Add(n, v)
	}
	add(labels.MetricName, name)
	if extraName != "" {
		add(extraName, extraValue)
	}
	for _, l := range c.proxy {
		add(l.Name, l.Value)
	}
	for _, t := range cn.tags {
		add(t.Name, bound(t.Value))
	}
	for _, lp := range m.GetLabel() {
		n := sanitizeLabelName(lp.GetName())
		if c.isProxyLabel(n) || n == labels.MetricName {
			n = "exported_" + strings.TrimLeft(n, "_")
		}
		add(n, bound(lp.GetValue()))
	}
	c.sb.Sort()
	return c.sb.Labels()
}

// withProxy merges the proxy labels and sorted tags (proxy first on a
// clash) into the converter's scratch slice, sorted by name.
func (c *converter) withProxy(tags []labels.Label) []labels.Label {
	out := c.scratch[:0]
	i, j := 0, 0
	for i < len(c.proxy) || j < len(tags) {
		switch {
		case j == len(tags) || (i < len(c.proxy) && c.proxy[i].Name < tags[j].Name):
			out = append(out, c.proxy[i])
			i++
		case i == len(c.proxy) || tags[j].Name < c.proxy[i].Name:
			out = append(out, tags[j])
			j++
		default: // same name: the proxy's identity wins
			out = append(out, c.proxy[i])
			i++
			j++
		}
	}
	c.scratch = out
	return out
}

// fastLabels builds name + extra + base without sorting: base is sorted,
// and the two extra labels are merged in place (extra wins on a clash).
func (c *converter) fastLabels(base []labels.Label, name, extraName, extraValue string) labels.Labels {
	c.sb.Reset()
	pendName, pendExtra := true, extraName != ""
	for _, b := range base {
		if pendName && labels.MetricName <= b.Name {
			c.sb.Add(labels.MetricName, name)
			pendName = false
		}
		if pendExtra && extraName <= b.Name {
			c.sb.Add(extraName, extraValue)
			pendExtra = false
			if b.Name == extraName {
				continue
			}
		}
		c.sb.Add(b.Name, b.Value)
	}
	if pendName && pendExtra && extraName < labels.MetricName {
		c.sb.Add(extraName, extraValue)
		pendExtra = false
	}
	if pendName {
		c.sb.Add(labels.MetricName, name)
	}
	if pendExtra {
		c.sb.Add(extraName, extraValue)
	}
	return c.sb.Labels()
}

func (c *converter) isProxyLabel(n string) bool {
	for _, l := range c.proxy {
		if l.Name == n {
			return true
		}
	}
	return false
}
