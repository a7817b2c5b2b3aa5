package envoymetrics

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/receivers/receivertest"
)

// hostileHarness is a receiver behind a real gRPC listener with a message
// cap, writing to a TSDB opened as storage/metricstore opens it (10m
// out-of-order window).
type hostileHarness struct {
	db     *tsdb.DB
	reg    *prometheus.Registry
	cc     *grpc.ClientConn
	client metricsv3.MetricsServiceClient
}

func startHostile(t *testing.T, cfg Config, maxMsg int) *hostileHarness {
	t.Helper()
	opts := tsdb.DefaultOptions()
	opts.OutOfOrderTimeWindow = (10 * time.Minute).Milliseconds()
	db, err := tsdb.Open(t.TempDir(), nil, nil, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h := &hostileHarness{db: db, reg: prometheus.NewRegistry()}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(maxMsg))
	New(cfg, db, pipeline.NewTelemetry(h.reg), nil).Register(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	h.cc, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.cc.Close() })
	h.client = metricsv3.NewMetricsServiceClient(h.cc)
	return h
}

// stream sends msgs on one stream and returns how it ended.
func (h *hostileHarness) stream(t *testing.T, msgs ...*metricsv3.StreamMetricsMessage) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := h.client.StreamMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := st.Send(m); err != nil {
			break // the server ended the stream; CloseAndRecv has why
		}
	}
	_, err = st.CloseAndRecv()
	return err
}

// sendRaw streams pre-encoded messages (invalid UTF-8 and the like).
func (h *hostileHarness) sendRaw(t *testing.T, msgs ...[]byte) error {
	return receivertest.SendRaw(t, h.cc, "/envoy.service.metrics.v3.MetricsService/StreamMetrics", msgs...)
}

// stored returns every series in the TSDB with the timestamps of its
// samples.
func (h *hostileHarness) stored(t *testing.T) map[string][]int64 {
	t.Helper()
	q, err := h.db.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	out := map[string][]int64{}
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+"))
	var it chunkenc.Iterator
	for set.Next() {
		it = set.At().Iterator(it)
		var ts []int64
		for it.Next() != chunkenc.ValNone {
			t, _ := it.At()
			ts = append(ts, t)
		}
		out[set.At().Labels().String()] = ts
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// series returns the label sets of every stored series.
func (h *hostileHarness) series(t *testing.T) []labels.Labels {
	t.Helper()
	q, err := h.db.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var out []labels.Labels
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+"))
	for set.Next() {
		out = append(out, set.At().Labels())
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (h *hostileHarness) refused(t *testing.T) map[string]float64 {
	return receivertest.Refused(t, h.reg)
}

func withNode(t testing.TB, pod string, fams ...*dto.MetricFamily) *metricsv3.StreamMetricsMessage {
	return &metricsv3.StreamMetricsMessage{
		Identifier:   &metricsv3.StreamMetricsMessage_Identifier{Node: istioNode(t, pod, "default", "reviews")},
		EnvoyMetrics: fams,
	}
}

func labelled(name string, ts int64, lps ...*dto.LabelPair) *dto.MetricFamily {
	mf := gauge(name, 1, ts)
	mf.Metric[0].Label = lps
	return mf
}

func lp(name, value string) *dto.LabelPair { return &dto.LabelPair{Name: &name, Value: &value} }

// seriesNamed returns the stored series whose name is name.
func seriesNamed(got map[string][]int64, name string) []string {
	var out []string
	for s := range got {
		if strings.HasPrefix(s, `{__name__="`+name+`"`) {
			out = append(out, s)
		}
	}
	return out
}

// TestHostileInput is the Metrics Service part of docs/hostile-input.md:
// each case asserts how the stream ends, what the TSDB holds, what was
// counted as refused, and that a good stream is stored afterwards.
func TestHostileInput(t *testing.T) {
	const maxMsg = 4 << 20
	now := time.Now().Truncate(time.Millisecond)
	ts := now.UnixMilli()
	for _, tc := range []struct {
		name        string
		cfg         Config
		msgs        func(t *testing.T) []*metricsv3.StreamMetricsMessage
		raw         func(t *testing.T) [][]byte
		wantCode    codes.Code
		wantMsg     string
		wantSeries  int
		wantRefused map[string]float64
		check       func(t *testing.T, h *hostileHarness, got map[string][]int64)
	}{
		{
			name: "message over the gRPC cap",
			msgs: func(t *testing.T) []*metricsv3.StreamMetricsMessage {
				return []*metricsv3.StreamMetricsMessage{withNode(t, "p", labelled("server.big", ts, lp("v", strings.Repeat("x", maxMsg+1))))}
			},
			wantCode: codes.ResourceExhausted, wantMsg: "larger than max",
		},
		{
			name: "stat name over max_stat_name_length refused, rest kept",
			msgs: func(t *testing.T) []*metricsv3.StreamMetricsMessage {
				return []*metricsv3.StreamMetricsMessage{withNode(t, "p", gauge("server."+strings.Repeat("n", 9000), 1, ts), gauge("server.ok", 1, ts))}
			},
			wantSeries: 1, wantRefused: map[string]float64{"malformed": 1},
		},
		{
			name: "1 MB label value cut to 1024 bytes",
			msgs: func(t *testing.T) []*metricsv3.StreamMetricsMessage {
				return []*metricsv3.StreamMetricsMessage{withNode(t, "p", labelled("server.big", ts, lp("path", strings.Repeat("é", 1<<19))))}
			},
			wantSeries: 1,
			check: func(t *testing.T, h *hostileHarness, got map[string][]int64) {
				for _, l := range h.series(t) {
					// 1024 bytes is 512 two-byte runes: cut at a rune boundary.
					if v := l.Get("path"); len(v) != 1024 || !utf8.ValidString(v) {
						t.Errorf("path label %d bytes (valid UTF-8 %v), want 1024", len(v), utf8.ValidString(v))
					}
				}
			},
		},
		{
			name: "series over max_series_per_proxy refused and counted",
			cfg:  Config{MaxSeriesPerProxy: 100},
			msgs: func(t *testing.T) []*metricsv3.StreamMetricsMessage {
				mf := gauge("server.many", 1, ts)
				mf.Metric = nil
				for i := range 150 {
					mf.Metric = append(mf.Metric, &dto.Metric{Gauge: &dto.Gauge{Value: proto.Float64(1)}, TimestampMs: proto.Int64(ts),
						Label: []*dto.LabelPair{lp("id", fmt.Sprint(i))}})
				}
				return []*metricsv3.StreamMetricsMessage{withNode(t, "p", mf)}
			},
			wantSeries: 100, wantRefused: map[string]float64{"series_limit": 50},
		},
		{
			// client_model's MetricFamily is proto2, so protobuf-go lets
			// invalid UTF-8 through to the receiver, which cleans it.
			name: "invalid UTF-8 in metric name, label name and value",
			msgs: func(t *testing.T) []*metricsv3.StreamMetricsMessage {
				return []*metricsv3.StreamMetricsMessage{withNode(t, "p", labelled("server.b\xffad", ts, lp("k\xfe", "v\xc3\x28")))}
			},
			wantSeries: 1,
			check: func(t *testing.T, h *hostileHarness, got map[string][]int64) {
				want := "{__name__=\"envoy_server_b_ad\", instance=\"p\", k_=\"v\uFFFD(\", namespace=\"default\", service=\"reviews\", workload=\"reviews-v1\"}"
				if _, ok := got[want]; !ok {
					t.Errorf("stored %v, want %s", got, want)
				}
			},
		},
		{
			// Node is proto3: protobuf-go refuses the whole message before
			// the receiver sees it.
			name: "invalid UTF-8 in the node id ends the stream",
			raw: func(t *testing.T) [][]byte {
				m := withNode(t, "p", gauge("server.ok", 1, ts))
				m.Identifier.Node.Id = "PLACEHOLDER"
				b, err := proto.Marshal(m)
				if err != nil || !bytes.Contains(b, []byte("PLACEHOLDER")) {
					t.Fatal("placeholder not in the encoding", err)
				}
				return [][]byte{bytes.ReplaceAll(b, []byte("PLACEHOLDER"), []byte("sidecar\xff\xfe~x"))}
			},
			wantCode: codes.Internal, wantMsg: "invalid UTF-8",
		},
		{
			name: "timestamps far in the past, far in the future, zero",
			msgs: func(t *testing.T) []*metricsv3.StreamMetricsMessage {
				return []*metricsv3.StreamMetricsMessage{withNode(t, "p",
					gauge("server.epoch", 1, 1),
					gauge("server.y2100", 1, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()),
					gauge("server.ahead", 1, now.Add(10*time.Minute).UnixMilli()),
					gauge("server.behind", 1, now.Add(-2*time.Hour).UnixMilli()),
					gauge("server.zero", 1, 0),
					gauge("server.now", 1, ts))}
			},
			wantSeries: 2, wantRefused: map[string]float64{"out_of_window": 4},
			check: func(t *testing.T, h *hostileHarness, got map[string][]int64) {
				for _, n := range []string{"envoy_server_zero", "envoy_server_now"} {
					s := seriesNamed(got, n)
					if len(s) != 1 || len(got[s[0]]) != 1 || math.Abs(float64(got[s[0]][0]-ts)) > 60_000 {
						t.Errorf("%s: %v, want one sample at about %d", n, got, ts)
					}
				}
			},
		},
		{
			// Before MaxFutureSkew, the proxy running 2h ahead moved the
			// TSDB head's end and the other proxy's current samples were
			// refused as too old.
			name: "a proxy whose clock runs 2h ahead does not stop the others",
			msgs: func(t *testing.T) []*metricsv3.StreamMetricsMessage {
				return []*metricsv3.StreamMetricsMessage{withNode(t, "ahead", gauge("server.skewed", 1, now.Add(2*time.Hour).UnixMilli()))}
			},
			wantSeries: 0, wantRefused: map[string]float64{"out_of_window": 1},
		},
		{
			name: "malformed metrics mixed with good ones",
			msgs: func(t *testing.T) []*metricsv3.StreamMetricsMessage {
				noValue := gauge("server.novalue", 1, ts)
				noValue.Metric[0].Gauge = nil
				nan := histogram("server.nan", ts)
				nan.Metric[0].Histogram.Bucket[1].UpperBound = proto.Float64(math.NaN())
				unknown := gauge("server.unknown", 1, ts)
				unknown.Type = dto.MetricType(99).Enum()
				noName := gauge("", 1, ts)
				return []*metricsv3.StreamMetricsMessage{withNode(t, "p", noValue, gauge("server.good", 1, ts), nan, unknown, noName)}
			},
			wantSeries: 2, wantRefused: map[string]float64{"malformed": 4},
			check: func(t *testing.T, h *hostileHarness, got map[string][]int64) {
				// The NaN histogram's first bucket was written before the
				// bad one was found; the metric counts as malformed once.
				if len(seriesNamed(got, "envoy_server_good")) != 1 || len(seriesNamed(got, "envoy_server_nan_bucket")) != 1 {
					t.Errorf("stored %v", got)
				}
			},
		},
		{
			name:     "first message without a node",
			msgs:     func(t *testing.T) []*metricsv3.StreamMetricsMessage { return []*metricsv3.StreamMetricsMessage{{}} },
			wantCode: codes.InvalidArgument, wantMsg: "identifier.node", wantRefused: map[string]float64{"malformed": 1},
		},
		{
			name: "empty stream",
			msgs: func(t *testing.T) []*metricsv3.StreamMetricsMessage { return nil },
		},
		{
			name: "node only, then an empty message",
			msgs: func(t *testing.T) []*metricsv3.StreamMetricsMessage {
				return []*metricsv3.StreamMetricsMessage{withNode(t, "p"), {}}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHostile(t, tc.cfg, maxMsg)
			var err error
			if tc.raw != nil {
				err = h.sendRaw(t, tc.raw(t)...)
			} else {
				err = h.stream(t, tc.msgs(t)...)
			}
			if status.Code(err) != tc.wantCode || (tc.wantMsg != "" && !strings.Contains(err.Error(), tc.wantMsg)) {
				t.Fatalf("stream ended with %v, want %v containing %q", err, tc.wantCode, tc.wantMsg)
			}
			got := h.stored(t)
			if len(got) != tc.wantSeries {
				t.Fatalf("%d series stored, want %d: %v", len(got), tc.wantSeries, got)
			}
			if r := h.refused(t); fmt.Sprint(r) != fmt.Sprint(orEmpty(tc.wantRefused)) {
				t.Errorf("refused %v, want %v", r, tc.wantRefused)
			}
			if tc.check != nil {
				tc.check(t, h, got)
			}
			// Still serving, and current samples of another proxy are
			// stored.
			if err := h.stream(t, withNode(t, "other", gauge("server.after", 1, time.Now().UnixMilli()))); err != nil {
				t.Fatalf("good stream after the hostile one: %v", err)
			}
			if s := seriesNamed(h.stored(t), "envoy_server_after"); len(s) != 1 {
				t.Fatalf("good stream after the hostile one not stored; refused %v", h.refused(t))
			}
		})
	}
}

func orEmpty(m map[string]float64) map[string]float64 {
	if m == nil {
		return map[string]float64{}
	}
	return m
}
