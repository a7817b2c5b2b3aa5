package promapi

import (
	"net/http"
	"sort"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"google.golang.org/protobuf/proto"
)

// federate serves /federate as Prometheus does: the newest sample (within
// the lookback delta) of every series matching one of the match[]
// selectors, in the text exposition format with timestamps, so another
// Prometheus can scrape meshlens's aggregated series.
func (a *API) federate(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, a.opts.MaxRequestBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "error parsing form values: "+err.Error(), http.StatusBadRequest)
		return
	}
	var sets [][]*labels.Matcher
	for _, s := range r.Form["match[]"] {
		ms, err := a.parser.ParseMetricSelector(s)
		if err != nil {
			http.Error(w, "bad match[] "+s+": "+err.Error(), http.StatusBadRequest)
			return
		}
		sets = append(sets, ms)
	}
	if len(sets) == 0 {
		http.Error(w, "federate needs at least one match[] selector", http.StatusBadRequest)
		return
	}
	now := a.opts.Now().UnixMilli()
	mint := now - a.opts.LookbackDelta.Milliseconds()
	q, err := a.queryable.Querier(mint, now)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer q.Close()

	type point struct {
		lset labels.Labels
		t    int64
		v    float64
	}
	seen := map[uint64]bool{}
	var points []point
	hints := &storage.SelectHints{Start: mint, End: now}
	var it chunkenc.Iterator
	for _, ms := range sets {
		set := q.Select(r.Context(), false, hints, ms...)
		for set.Next() {
			s := set.At()
			h := s.Labels().Hash()
			if seen[h] {
				continue
			}
			it = s.Iterator(it)
			t, v, ok := int64(0), 0.0, false
			for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
				if vt == chunkenc.ValFloat {
					t, v = it.At()
					ok = !value.IsStaleNaN(v)
				}
			}
			if ok {
				seen[h] = true
				points = append(points, point{s.Labels(), t, v})
			}
			if len(points) >= a.opts.MaxSeries*10 {
				break
			}
		}
		if err := set.Err(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	sort.Slice(points, func(i, j int) bool {
		return labels.Compare(points[i].lset, points[j].lset) < 0
	})

	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	w.Header().Set("Content-Type", string(format))
	enc := expfmt.NewEncoder(w, format)
	var fam *dto.MetricFamily
	flush := func() {
		if fam != nil {
			_ = enc.Encode(fam)
		}
	}
	for _, p := range points {
		name := p.lset.Get(labels.MetricName)
		if fam == nil || fam.GetName() != name {
			flush()
			fam = &dto.MetricFamily{Name: proto.String(name), Type: dto.MetricType_UNTYPED.Enum()}
		}
		m := &dto.Metric{TimestampMs: proto.Int64(p.t), Untyped: &dto.Untyped{Value: proto.Float64(p.v)}}
		p.lset.Range(func(l labels.Label) {
			if l.Name != labels.MetricName {
				m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(l.Name), Value: proto.String(l.Value)})
			}
		})
		fam.Metric = append(fam.Metric, m)
	}
	flush()
}
