package redmetrics

import (
	"math"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// part is one metric of an entity: a counter, or a classic histogram with
// fixed upper bounds (exposed as _bucket{le}, _sum and _count).
type part struct {
	name   string
	bounds []float64 // nil for a counter
	off    int       // index of the part's first accumulator
}

func (p part) width() int {
	if p.bounds == nil {
		return 1
	}
	return len(p.bounds) + 3 // buckets, +Inf, sum, count
}

// layout is the fixed set of series an entity of one family exposes.
type layout struct {
	parts []part
	n     int
}

func newLayout(parts ...part) *layout {
	l := &layout{}
	for _, p := range parts {
		p.off = l.n
		l.n += p.width()
		l.parts = append(l.parts, p)
	}
	return l
}

// counter and histogram return the offset of the named part; layouts are
// built once, so a missing name is a programming error caught by tests.
func (l *layout) offset(name string) int {
	for _, p := range l.parts {
		if p.name == name {
			return p.off
		}
	}
	panic("redmetrics: unknown part " + name)
}

// seriesLabels returns the labels of every series of an entity whose
// identifying labels are base, in accumulator order.
func (l *layout) seriesLabels(base labels.Labels) []labels.Labels {
	out := make([]labels.Labels, 0, l.n)
	b := labels.NewBuilder(base)
	for _, p := range l.parts {
		if p.bounds == nil {
			b.Set(labels.MetricName, p.name)
			out = append(out, b.Labels())
			continue
		}
		b.Set(labels.MetricName, p.name+"_bucket")
		for _, ub := range p.bounds {
			b.Set("le", formatLE(ub))
			out = append(out, b.Labels())
		}
		b.Set("le", "+Inf")
		out = append(out, b.Labels())
		b.Del("le")
		b.Set(labels.MetricName, p.name+"_sum")
		out = append(out, b.Labels())
		b.Set(labels.MetricName, p.name+"_count")
		out = append(out, b.Labels())
	}
	return out
}

// entity accumulates the series of one label combination of a family.
type entity struct {
	lsets []labels.Labels
	refs  []storage.SeriesRef
	base  []float64 // cumulative values restored from storage at creation
	acc   []float64 // increments since creation; histogram buckets non-cumulative
	// touched is the flush epoch in which the entity last received data.
	touched uint64
	// dirty says the entity received data since a flush last snapshotted
	// it. A forced flush (Sync) writes only dirty entities: the others'
	// newest values are already in the WAL, and rewriting every series at
	// every stream end multiplied the TSDB's samples (and head memory) by
	// the rate of stream ends.
	dirty bool
	// serverSeen is the flush epoch of the last server-side observation (used
	// by the service graph to avoid counting a request from both sides).
	serverSeen uint64
}

func newEntity(l *layout, base labels.Labels, restore map[uint64]float64) *entity {
	e := &entity{
		lsets: l.seriesLabels(sanitizeLabels(base)),
		refs:  make([]storage.SeriesRef, l.n),
		base:  make([]float64, l.n),
		acc:   make([]float64, l.n),
	}
	for i, ls := range e.lsets {
		if v, ok := restore[ls.Hash()]; ok {
			e.base[i] = v
		}
	}
	return e
}

func (e *entity) add(off int, v float64) { e.acc[off] += v }

// observe records v in the histogram part p.
func (e *entity) observe(p *part, v float64) {
	i := sort.SearchFloat64s(p.bounds, v) // first bound >= v: Prometheus's le is inclusive
	e.acc[p.off+i]++
	nb := len(p.bounds) + 1
	e.acc[p.off+nb] += v
	e.acc[p.off+nb+1]++
}

// values writes the cumulative value of every series into out.
func (e *entity) values(l *layout, out []float64) {
	for _, p := range l.parts {
		if p.bounds == nil {
			out[p.off] = e.base[p.off] + e.acc[p.off]
			continue
		}
		running := 0.0
		nb := len(p.bounds) + 1
		for i := 0; i < nb; i++ {
			running += e.acc[p.off+i]
			out[p.off+i] = e.base[p.off+i] + running
		}
		out[p.off+nb] = e.base[p.off+nb] + e.acc[p.off+nb]
		out[p.off+nb+1] = e.base[p.off+nb+1] + e.acc[p.off+nb+1]
	}
}

// table holds the entities of one family, keyed by a comparable key.
type table[K comparable] struct {
	name     string
	layout   *layout
	m        map[K]*entity
	labelsOf func(K) labels.Labels
	max      int
	overflow uint64
}

func newTable[K comparable](name string, l *layout, max int, labelsOf func(K) labels.Labels) *table[K] {
	return &table[K]{name: name, layout: l, m: map[K]*entity{}, labelsOf: labelsOf, max: max}
}

// get returns the entity for k, creating it unless the table is full, in
// which case it returns nil and counts the overflow.
func (t *table[K]) get(k K, epoch uint64, restore map[uint64]float64) *entity {
	e, ok := t.m[k]
	if !ok {
		if len(t.m) >= t.max {
			t.overflow++
			return nil
		}
		e = newEntity(t.layout, t.labelsOf(k), restore)
		t.m[k] = e
	}
	e.touched = epoch
	e.dirty = true
	return e
}

func formatLE(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return labelFloat(f)
}
