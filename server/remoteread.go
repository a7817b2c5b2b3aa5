package server

import (
	"context"
	"fmt"
	"net/url"
	"slices"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/util/annotations"
)

// newRemoteQueryable reads metrics over Prometheus remote read: the PromQL
// engine of a query node evaluates on the raw samples of the shared store,
// so every query (and the topology's sums) behaves as on an embedded TSDB.
func newRemoteQueryable(cfg RemoteReadConfig) (storage.Queryable, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("storage.remote_read.url: %w", err)
	}
	hc := commoncfg.DefaultHTTPClientConfig
	if cfg.BearerTokenFile != "" {
		hc.Authorization = &commoncfg.Authorization{Type: "Bearer", CredentialsFile: cfg.BearerTokenFile}
	}
	client, err := remote.NewReadClient("meshlens-query", &remote.ClientConfig{
		URL:              &commoncfg.URL{URL: u},
		Timeout:          model.Duration(cfg.Timeout),
		HTTPClientConfig: hc,
		Headers:          cfg.Headers,
		// Bounds one streamed frame, as Prometheus's own remote read does.
		ChunkedReadLimit: promconfig.DefaultChunkedReadLimit,
	})
	if err != nil {
		return nil, fmt.Errorf("storage.remote_read: %w", err)
	}
	// readRecent: there is no local storage to prefer for recent data.
	return labelQueryable{remote.NewSampleAndChunkQueryableClient(client, labels.EmptyLabels(), nil, true, nil)}, nil
}

// labelQueryable answers label names and values, which the remote-read
// protocol cannot ask for, from the series a Select returns: the UI and
// Grafana's variables need them.
type labelQueryable struct{ storage.Queryable }

func (q labelQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	inner, err := q.Queryable.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return labelQuerier{Querier: inner, mint: mint, maxt: maxt}, nil
}

type labelQuerier struct {
	storage.Querier
	mint, maxt int64
}

// series selects the series matching ms (every series with a name when ms
// is empty) and calls fn with each one's labels.
func (q labelQuerier) series(ctx context.Context, ms []*labels.Matcher, fn func(labels.Labels)) (annotations.Annotations, error) {
	if len(ms) == 0 {
		ms = []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+")}
	}
	hints := &storage.SelectHints{Start: q.mint, End: q.maxt, Func: "series"}
	set := q.Querier.Select(ctx, false, hints, ms...)
	for set.Next() {
		fn(set.At().Labels())
	}
	return set.Warnings(), set.Err()
}

func (q labelQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	seen := map[string]struct{}{}
	ann, err := q.series(ctx, ms, func(l labels.Labels) {
		if v := l.Get(name); v != "" {
			seen[v] = struct{}{}
		}
	})
	return sortedSet(seen, limitOf(hints)), ann, err
}

func (q labelQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	seen := map[string]struct{}{}
	ann, err := q.series(ctx, ms, func(l labels.Labels) {
		l.Range(func(lb labels.Label) { seen[lb.Name] = struct{}{} })
	})
	return sortedSet(seen, limitOf(hints)), ann, err
}

func limitOf(h *storage.LabelHints) int {
	if h == nil {
		return 0
	}
	return h.Limit
}

func sortedSet(m map[string]struct{}, limit int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
