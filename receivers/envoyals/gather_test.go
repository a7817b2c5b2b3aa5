package envoyals

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gathered exposes the sum of one metric family's samples matching labels
// as a single collector, for testutil.ToFloat64.
type gathered struct {
	g      prometheus.Gatherer
	name   string
	labels map[string]string
}

func (g gathered) Describe(ch chan<- *prometheus.Desc) {
	ch <- prometheus.NewDesc(g.name+"_sum_for_test", "test", nil, nil)
}

func (g gathered) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := g.g.Gather()
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != g.name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range g.labels {
				if !hasLabel(m, k, v) {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(g.name+"_sum_for_test", "test", nil, nil), prometheus.UntypedValue, sum)
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == k && lp.GetValue() == v {
			return true
		}
	}
	return false
}
