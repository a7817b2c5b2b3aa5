package promapi

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

func TestFederate(t *testing.T) {
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	db := openTSDB(t, []testSeries{
		{lbls: labels.FromStrings("__name__", "istio_requests_total", "reporter", "destination", "destination_service_name", "reviews"),
			ts: []int64{t0.UnixMilli(), t0.Add(10 * time.Second).UnixMilli()}, vals: []float64{5, 7}},
		{lbls: labels.FromStrings("__name__", "istio_requests_total", "reporter", "source", "destination_service_name", "reviews"),
			ts: []int64{t0.UnixMilli()}, vals: []float64{4}},
		{lbls: labels.FromStrings("__name__", "other_metric", "x", `quote"d`),
			ts: []int64{t0.UnixMilli()}, vals: []float64{1}},
		// Older than the lookback: not federated.
		{lbls: labels.FromStrings("__name__", "istio_requests_total", "reporter", "destination", "destination_service_name", "old"),
			ts: []int64{t0.Add(-time.Hour).UnixMilli()}, vals: []float64{9}},
	})
	_, srv := newTestServer(t, Options{Queryable: db})

	get := func(q url.Values) (int, string) {
		resp, err := http.Get(srv.URL + "/federate?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get(url.Values{"match[]": {`istio_requests_total`, `{__name__="other_metric"}`}})
	if code != 200 {
		t.Fatalf("federate: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("federate output does not parse as the text format: %v\n%s", err, body)
	}
	reqs := fams["istio_requests_total"]
	if reqs == nil || len(reqs.Metric) != 2 {
		t.Fatalf("want 2 istio_requests_total series (not the stale one), got:\n%s", body)
	}
	for _, m := range reqs.Metric {
		isDest := false
		for _, l := range m.Label {
			if l.GetName() == "reporter" && l.GetValue() == "destination" {
				isDest = true
			}
		}
		if isDest && (m.GetUntyped().GetValue() != 7 || m.GetTimestampMs() != t0.Add(10*time.Second).UnixMilli()) {
			t.Errorf("destination series: value %v at %d, want the newest sample 7 at %d", m.GetUntyped().GetValue(), m.GetTimestampMs(), t0.Add(10*time.Second).UnixMilli())
		}
	}
	if fams["other_metric"] == nil || fams["other_metric"].Metric[0].Label[0].GetValue() != `quote"d` {
		t.Errorf("label value not round-tripped through escaping:\n%s", body)
	}
	if code, _ := get(url.Values{}); code != 400 {
		t.Errorf("federate without match[]: %d, want 400", code)
	}
	if code, _ := get(url.Values{"match[]": {"{"}}); code != 400 {
		t.Errorf("federate with a bad selector: %d, want 400", code)
	}
}
