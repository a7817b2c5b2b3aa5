package envoymetrics

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
)

// emitFunc receives one sample. An error stops the conversion of the
// message (the storage is failing); per-sample refusals are counted by the
// emitter itself and return nil.
type emitFunc func(l labels.Labels, t int64, v float64) error

// converter turns MetricFamilies from one proxy into samples. It caches the
// tag extraction of stat names, because a proxy sends the same few
// thousand names at every flush; it is used by one stream at a time.
type converter struct {
	x        *tagExtractor
	proxy    []labels.Label
	cache    map[string]cachedName
	maxCache int
	maxName  int
	sb       labels.ScratchBuilder
	names    []string
}

type cachedName struct {
	name string
	tags []tag
	// base is the proxy labels and tags, deduplicated and sorted, for the
	// common case of a metric without labels of its own.
	base []labels.Label
}

func newConverter(x *tagExtractor, p proxyIdentity, maxCache, maxName int) *converter {
	c := &converter{x: x, cache: map[string]cachedName{}, maxCache: maxCache, maxName: maxName,
		sb: labels.NewScratchBuilder(16)}
	for _, l := range []labels.Label{
		{Name: LabelService, Value: p.Service}, {Name: LabelNamespace, Value: p.Namespace},
		{Name: LabelInstance, Value: p.Instance}, {Name: LabelWorkload, Value: p.Workload},
	} {
		if l.Value != "" {
			c.proxy = append(c.proxy, l)
		}
	}
	return c
}

// errMalformed marks a metric that cannot be stored; the family's other
// metrics are kept.
var errMalformed = errors.New("malformed metric")

func (c *converter) extract(stat string) cachedName {
	if cn, ok := c.cache[stat]; ok {
		return cn
	}
	name, tags := c.x.Extract(stat)
	cn := cachedName{name: name, tags: tags, base: c.baseLabels(tags)}
	if len(c.cache) >= c.maxCache {
		// Crude but bounded: a proxy whose names churn past the cache size
		// just pays for extraction again.
		clear(c.cache)
	}
	c.cache[stat] = cn
	return cn
}

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
	var cn cachedName
	if hasLabels(mf) {
		cn = cachedName{name: sanitizeMetricName("envoy_" + stat)}
		if rest, ok := c.x.customNamespace(stat); ok {
			cn.name = sanitizeMetricName(rest)
		}
	} else {
		cn = c.extract(stat)
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

func (c *converter) metric(typ dto.MetricType, cn cachedName, m *dto.Metric, ts int64, emit emitFunc) error {
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
func (c *converter) labels(cn cachedName, m *dto.Metric, name, extraName, extraValue string) labels.Labels {
	if len(m.GetLabel()) == 0 && cn.base != nil {
		return c.fastLabels(cn.base, name, extraName, extraValue)
	}
	c.sb.Reset()
	c.names = c.names[:0]
	add := func(n, v string) {
		for _, seen := range c.names {
			if seen == n {
				return
			}
		}
		c.names = append(c.names, n)
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

// baseLabels merges the proxy labels and tags (proxy first on a clash),
// sorted by name.
func (c *converter) baseLabels(tags []tag) []labels.Label {
	base := make([]labels.Label, 0, len(c.proxy)+len(tags))
	base = append(base, c.proxy...)
	for _, t := range tags {
		if t.Name == labels.MetricName || c.isProxyLabel(t.Name) {
			continue
		}
		dup := false
		for _, b := range base {
			if b.Name == t.Name {
				dup = true
				break
			}
		}
		if !dup {
			base = append(base, labels.Label{Name: t.Name, Value: bound(t.Value)})
		}
	}
	slices.SortFunc(base, func(a, b labels.Label) int { return strings.Compare(a.Name, b.Name) })
	return base
}

// fastLabels builds name + extra + base without sorting: base is sorted,
// and the two extra labels are merged in place.
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
