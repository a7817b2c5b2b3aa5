package promapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// prometheusBinary is the reference Prometheus (Debian's package, 2.42).
const prometheusBinary = "/usr/bin/prometheus"

// requirePeers makes a missing reference binary a failure rather than a
// skip; CI sets it.
func requirePeers() bool { return os.Getenv("MESHLENS_REQUIRE_PEERS") == "1" }

// startPrometheus runs the reference Prometheus on a free loopback port with
// the remote-write receiver on, and returns its base URL.
func startPrometheus(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(prometheusBinary); err != nil {
		msg := fmt.Sprintf("reference Prometheus binary %s is missing (apt-get install prometheus): %v", prometheusBinary, err)
		if requirePeers() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	mustf(t, os.WriteFile(cfg, []byte("global:\n  scrape_interval: 1h\n"), 0o600), "write config")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	mustf(t, err, "listen")
	addr := l.Addr().String()
	l.Close()

	var logs bytes.Buffer
	cmd := exec.Command(prometheusBinary,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--web.enable-remote-write-receiver",
		"--log.level=warn",
	)
	cmd.Stdout = &logs
	cmd.Stderr = &logs
	mustf(t, cmd.Start(), "start %s", prometheusBinary)
	t.Cleanup(func() {
		// Our own child, by PID.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus at %s not ready: %v\n%s", addr, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// remoteWrite pushes series to a Prometheus remote-write receiver.
func remoteWrite(t *testing.T, base string, series []testSeries) {
	t.Helper()
	req := &prompb.WriteRequest{}
	for _, s := range series {
		ts := prompb.TimeSeries{}
		s.lbls.Range(func(l labels.Label) {
			ts.Labels = append(ts.Labels, prompb.Label{Name: l.Name, Value: l.Value})
		})
		for i, t := range s.ts {
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: t, Value: s.vals[i]})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	raw, err := req.Marshal()
	mustf(t, err, "marshal write request")
	hreq, err := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
	mustf(t, err, "request")
	hreq.Header.Set("Content-Encoding", "snappy")
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	hreq.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(hreq)
	mustf(t, err, "remote write")
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("remote write: %d %s", resp.StatusCode, body)
	}
}

// TestCompareWithPrometheus runs the same PromQL against meshlens and a real
// Prometheus holding the same samples, and compares the answers.
func TestCompareWithPrometheus(t *testing.T) {
	promURL := startPrometheus(t)
	t0 := fixtureStart()
	series := fixture(t0)
	remoteWrite(t, promURL, series)
	_, srv := newTestServer(t, Options{Queryable: openTSDB(t, series)})

	// Query instants fall 7 s past a sample so that no range boundary is
	// on a sample (the reference closes ranges on the left, we open them).
	at := func(d time.Duration) string { return unixString(t0.Add(d + 7*time.Second)) }
	mid, late := at(20*time.Minute), at(38*time.Minute)
	gapTime := at(21 * time.Minute) // inside the gauge's gap, past lookback

	instant := []string{
		`istio_requests_total{reporter="destination",response_code="200"}`,
		`sum(rate(istio_requests_total[5m]))`,
		`sum by (destination_service_name) (rate(istio_requests_total{reporter="destination"}[5m]))`,
		`sum without (response_code, reporter) (increase(istio_requests_total[10m]))`,
		`sum by (destination_service_name) (rate(istio_requests_total{response_code=~"5.."}[5m])) / sum by (destination_service_name) (rate(istio_requests_total[5m]))`,
		`histogram_quantile(0.95, sum by (le, destination_service_name) (rate(istio_request_duration_milliseconds_bucket{reporter="destination"}[5m])))`,
		`histogram_quantile(0.5, sum by (le) (rate(istio_request_duration_milliseconds_bucket[10m])))`,
		`histogram_quantile(0.99, rate(istio_request_duration_milliseconds_bucket{destination_service_name="ratings"}[3m]))`,
		`topk(3, sum by (source_workload, destination_service_name) (rate(istio_requests_total[5m])))`,
		`bottomk(2, rate(istio_tcp_sent_bytes_total[5m]) or sum by (reporter) (rate(istio_requests_total[5m])))`,
		`rate(istio_requests_total{destination_service_name="ratings"}[5m] offset 10m)`,
		`sum(istio_requests_total @ ` + mid + `)`,
		`sum(rate(istio_requests_total[1m] @ ` + mid + ` offset 2m))`,
		`label_replace(sum by (destination_service_name) (rate(istio_requests_total[5m])), "svc", "$1-svc", "destination_service_name", "(.*)")`,
		`absent(istio_requests_total{destination_service_name="nonexistent", reporter="source"})`,
		`absent(istio_requests_total)`,
		`count_values("hundreds", floor(sum by (response_code) (istio_requests_total) / 100))`,
		`count_values("v", round(meshlens_test_gauge))`,
		`count by (reporter) (istio_requests_total)`,
		`meshlens_test_gauge`,
		`meshlens_test_gauge * 2 > -3`,
		`avg_over_time(meshlens_test_gauge[10m])`,
		`max_over_time(istio_tcp_sent_bytes_total[2m]) - min_over_time(istio_tcp_sent_bytes_total[2m])`,
		`quantile_over_time(0.9, meshlens_test_gauge{kind="gap"}[15m])`,
		`deriv(meshlens_test_gauge{kind="tiny"}[5m])`,
		`resets(istio_requests_total{destination_service_name="ratings"}[40m])`,
		`irate(istio_tcp_sent_bytes_total[1m])`,
		`sort_desc(sum by (destination_service_name) (rate(istio_requests_total[5m])))`,
		`sort(sum by (source_workload) (rate(istio_requests_total[5m])))`,
		`scalar(sum(rate(istio_tcp_sent_bytes_total[5m])))`,
		`vector(time())`,
		`time() - timestamp(istio_tcp_sent_bytes_total)`,
		`1 + 2 * 3`,
		`"a string"`,
		`sum(rate(istio_requests_total[5m])) by (reporter) / ignoring(reporter) group_left sum(rate(istio_requests_total[5m]))`,
		`max(sum_over_time(istio_requests_total[5m:1m]))`,
		`stddev by (reporter) (rate(istio_requests_total[5m]))`,
		`quantile(0.3, rate(istio_requests_total[5m]))`,
		`clamp_max(rate(istio_requests_total{response_code="503"}[5m]), 0.1)`,
		`rate(istio_requests_total{destination_service_name="reviews"}[5m] @ end())`,
	}
	compared, nonEmpty := 0, 0
	for _, q := range instant {
		for _, ts := range []string{mid, late, gapTime} {
			compared++
			if compareQuery(t, srv.URL, promURL, "/api/v1/query", url.Values{"query": {q}, "time": {ts}}) {
				nonEmpty++
			}
		}
	}

	rangeQueries := []string{
		`sum by (destination_service_name) (rate(istio_requests_total{reporter="destination"}[1m]))`,
		`histogram_quantile(0.95, sum by (le) (rate(istio_request_duration_milliseconds_bucket[2m])))`,
		`meshlens_test_gauge`,
		`topk(2, rate(istio_requests_total[2m]))`,
		`sum(rate(istio_requests_total[1m] offset 5m))`,
		`rate(istio_tcp_sent_bytes_total[1m] @ start())`,
		`absent(nothing{a="b"})`,
		`label_replace(rate(istio_tcp_sent_bytes_total[1m]), "x", "$1", "request_protocol", "t(.*)")`,
		`count_values("bucket", meshlens_test_gauge{kind="gap"})`,
		`time()`,
	}
	for _, q := range rangeQueries {
		for _, step := range []string{"60", "2m", "37.5"} {
			compared++
			if compareQuery(t, srv.URL, promURL, "/api/v1/query_range", url.Values{
				"query": {q}, "start": {at(2 * time.Minute)}, "end": {late}, "step": {step},
			}) {
				nonEmpty++
			}
		}
	}
	// Guard against comparing empty answers only (e.g. data not ingested).
	if nonEmpty < compared*8/10 {
		t.Errorf("only %d of %d queries returned data", nonEmpty, compared)
	}
	t.Logf("compared %d queries with Prometheus, %d with data", compared, nonEmpty)

	// Errors: same status and error type.
	errorCases := []struct {
		path string
		form url.Values
	}{
		{"/api/v1/query", url.Values{"query": {"sum(("}}},
		{"/api/v1/query", url.Values{"query": {"rate(istio_requests_total)"}}},
		{"/api/v1/query", url.Values{"query": {"istio_requests_total + on(reporter) istio_requests_total"}, "time": {mid}}},
		{"/api/v1/query", url.Values{"query": {"1"}, "time": {"tomorrow"}}},
		{"/api/v1/query_range", url.Values{"query": {"1"}, "start": {"0"}, "end": {"11001"}, "step": {"1"}}},
		{"/api/v1/query_range", url.Values{"query": {"1"}, "start": {"10"}, "end": {"0"}, "step": {"1"}}},
		{"/api/v1/query_range", url.Values{"query": {"1"}, "start": {"0"}, "end": {"10"}, "step": {"-1"}}},
		{"/api/v1/series", url.Values{}},
		{"/api/v1/series", url.Values{"match[]": {`{a=~".*"}`}}},
	}
	for _, ec := range errorCases {
		ours := fetch(t, srv.URL+ec.path, ec.form)
		ref := fetch(t, promURL+ec.path, ec.form)
		if ours.code != ref.code || ours.env.ErrorType != ref.env.ErrorType || ours.env.Status != "error" {
			t.Errorf("%s %v: ours %d %s (%s), prometheus %d %s (%s)", ec.path, ec.form, ours.code, ours.env.ErrorType, ours.env.Error, ref.code, ref.env.ErrorType, ref.env.Error)
		}
	}

	// Metadata endpoints over the same data.
	for _, mc := range []struct {
		path string
		form url.Values
	}{
		{"/api/v1/series", url.Values{"match[]": {`istio_requests_total{destination_service_name="ratings"}`, `istio_tcp_sent_bytes_total`}}},
		{"/api/v1/labels", url.Values{"match[]": {`istio_request_duration_milliseconds_bucket`}}},
		{"/api/v1/labels", nil},
		{"/api/v1/label/__name__/values", nil},
		{"/api/v1/label/destination_service_name/values", url.Values{"match[]": {`istio_requests_total{reporter="source"}`}}},
	} {
		ours := fetch(t, srv.URL+mc.path, mc.form)
		ref := fetch(t, promURL+mc.path, mc.form)
		if !jsonEqual(ours.env.Data, ref.env.Data) {
			t.Errorf("%s %v:\nours       %s\nprometheus %s", mc.path, mc.form, ours.env.Data, ref.env.Data)
		}
	}
}

type fetched struct {
	code int
	env  envelope
}

// fetch POSTs form to u, or GETs it when u is a label values path (which
// the reference serves on GET only).
func fetch(t *testing.T, u string, form url.Values) fetched {
	t.Helper()
	var (
		resp *http.Response
		err  error
	)
	if strings.Contains(u, "/api/v1/label/") {
		resp, err = http.Get(u + "?" + form.Encode())
	} else {
		resp, err = http.PostForm(u, form)
	}
	mustf(t, err, "%s", u)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	mustf(t, err, "read %s", u)
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("%s: decode %q: %v", u, body, err)
	}
	return fetched{resp.StatusCode, env}
}

// compareQuery reports whether the answers held any data, so that the test
// can tell it compared something.
func compareQuery(t *testing.T, ours, ref, path string, form url.Values) bool {
	t.Helper()
	a := fetch(t, ours+path, form)
	b := fetch(t, ref+path, form)
	if a.code != 200 || b.code != 200 {
		t.Errorf("%s %s: ours %d %s, prometheus %d %s", path, form.Encode(), a.code, a.env.Error, b.code, b.env.Error)
		return false
	}
	ordered := strings.Contains(form.Get("query"), "sort")
	if diff := diffResults(a.env.Data, b.env.Data, ordered); diff != "" {
		t.Errorf("%s %s: %s\nours       %s\nprometheus %s", path, form.Encode(), diff, trim(a.env.Data), trim(b.env.Data))
	}
	return !strings.HasSuffix(string(b.env.Data), `"result":[]}`)
}

func trim(b []byte) string {
	if len(b) > 1500 {
		return string(b[:1500]) + "..."
	}
	return string(b)
}

type anyResult struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

type anySeries struct {
	Metric map[string]string `json:"metric"`
	Value  []any             `json:"value"`
	Values [][]any           `json:"values"`
}

func (s anySeries) key() string {
	keys := make([]string, 0, len(s.Metric))
	for k, v := range s.Metric {
		keys = append(keys, k+"="+strconv.Quote(v))
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}

// diffResults compares two query answers: same type, same series (in order
// only for sort queries), same timestamps, values equal to 1e-9 relative.
func diffResults(a, b json.RawMessage, ordered bool) string {
	var ra, rb anyResult
	if err := json.Unmarshal(a, &ra); err != nil {
		return "ours: " + err.Error()
	}
	if err := json.Unmarshal(b, &rb); err != nil {
		return "prometheus: " + err.Error()
	}
	if ra.ResultType != rb.ResultType {
		return fmt.Sprintf("resultType %s vs %s", ra.ResultType, rb.ResultType)
	}
	switch ra.ResultType {
	case "scalar", "string":
		var pa, pb []any
		_ = json.Unmarshal(ra.Result, &pa)
		_ = json.Unmarshal(rb.Result, &pb)
		return diffPoint(pa, pb)
	}
	var sa, sb []anySeries
	if err := json.Unmarshal(ra.Result, &sa); err != nil {
		return err.Error()
	}
	if err := json.Unmarshal(rb.Result, &sb); err != nil {
		return err.Error()
	}
	if len(sa) != len(sb) {
		return fmt.Sprintf("%d series vs %d", len(sa), len(sb))
	}
	if !ordered {
		byKey := func(x, y anySeries) int { return strings.Compare(x.key(), y.key()) }
		slices.SortFunc(sa, byKey)
		slices.SortFunc(sb, byKey)
	}
	for i := range sa {
		if sa[i].key() != sb[i].key() {
			return fmt.Sprintf("series %d: {%s} vs {%s}", i, sa[i].key(), sb[i].key())
		}
		if d := diffPoint(sa[i].Value, sb[i].Value); d != "" {
			return fmt.Sprintf("{%s}: %s", sa[i].key(), d)
		}
		if len(sa[i].Values) != len(sb[i].Values) {
			return fmt.Sprintf("{%s}: %d points vs %d", sa[i].key(), len(sa[i].Values), len(sb[i].Values))
		}
		for j := range sa[i].Values {
			if d := diffPoint(sa[i].Values[j], sb[i].Values[j]); d != "" {
				return fmt.Sprintf("{%s} point %d: %s", sa[i].key(), j, d)
			}
		}
	}
	return ""
}

func diffPoint(a, b []any) string {
	if len(a) != len(b) {
		return fmt.Sprintf("point %v vs %v", a, b)
	}
	if len(a) == 0 {
		return ""
	}
	if a[0] != b[0] {
		return fmt.Sprintf("timestamp %v vs %v", a[0], b[0])
	}
	sa, _ := a[1].(string)
	sb, _ := b[1].(string)
	fa, errA := strconv.ParseFloat(sa, 64)
	fb, errB := strconv.ParseFloat(sb, 64)
	if errA != nil || errB != nil {
		if sa != sb {
			return fmt.Sprintf("value %q vs %q", sa, sb)
		}
		return ""
	}
	if !floatsClose(fa, fb) {
		return fmt.Sprintf("value %s vs %s", sa, sb)
	}
	return ""
}

func floatsClose(a, b float64) bool {
	switch {
	case math.IsNaN(a) || math.IsNaN(b):
		return math.IsNaN(a) && math.IsNaN(b)
	case math.IsInf(a, 0) || math.IsInf(b, 0):
		return a == b
	}
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}
