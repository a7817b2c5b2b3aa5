package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshlens/meshlens/processors/recommend"
	"github.com/meshlens/meshlens/processors/recommend/xdspush"
)

// sendPastMinutes streams productpage->reviews traffic reported by both
// sidecars, perMinute requests in each of the minutes minutes ending five
// minutes ago, in time order: enough load history for a rate limit (the
// engine needs ten minutes of it) without waiting for it.
func sendPastMinutes(t *testing.T, ctx context.Context, addr string, minutes, perMinute int) {
	t.Helper()
	conn := dialALS(t, addr)
	client := openALS(t, ctx, conn, node("productpage-v1-abc", "productpage", "v1", productpageIP))
	server := openALS(t, ctx, conn, node("reviews-v1-xyz", "reviews", "v1", reviewsIP))
	first := time.Now().Add(-time.Duration(minutes+5) * time.Minute).Truncate(time.Minute)
	for m := 0; m < minutes; m++ {
		var out, in []*accesslogv3.HTTPAccessLogEntry
		for i := 0; i < perMinute; i++ {
			start := first.Add(time.Duration(m)*time.Minute + time.Duration(i)*time.Minute/time.Duration(perMinute))
			d := 20 * time.Millisecond
			out = append(out, httpEntry(start, d, 200, "outbound|9080||reviews.default.svc.cluster.local", reviewsIP, "127.0.0.6", productpageIP))
			in = append(in, httpEntry(start, d, 200, "inbound|9080||", "127.0.0.6", productpageIP, reviewsIP))
		}
		if err := client.send(out...); err != nil {
			t.Fatal(err)
		}
		if err := server.send(in...); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.close(); err != nil {
		t.Fatal(err)
	}
	if err := server.close(); err != nil {
		t.Fatal(err)
	}
}

// TestXDSPushServesRecommendedLimit runs the binary with xds_push on (not
// dry run), subscribes as the reviews sidecar would, feeds traffic, and
// checks that the limit pushed is the engine's recommendation.
func TestXDSPushServesRecommendedLimit(t *testing.T) {
	in := start(t, t.TempDir(), "--processors.recommendations.recompute_every=1s",
		"--processors.recommendations.xds_push.enabled=true", "--processors.recommendations.xds_push.listen=127.0.0.1:0",
		"--processors.recommendations.xds_push.dry_run=false")
	defer in.stop()
	addr := in.addrs["xds"]
	if addr == "" {
		t.Fatalf("no xds listener logged:\n%s", in.logs())
	}
	ctx := ctxTimeout(t, 30*time.Second)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{xdspush.SharedResourceName}
	if err := ads.Send(&discoveryv3.DiscoveryRequest{Node: node("reviews-v1-xyz", "reviews", "v1", reviewsIP), TypeUrl: xdspush.TypeURL, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	limitOf := func(r *discoveryv3.DiscoveryResponse) *lrlv3.LocalRateLimit {
		t.Helper()
		if len(r.GetResources()) != 1 {
			t.Fatalf("%d resources", len(r.GetResources()))
		}
		var ec corev3.TypedExtensionConfig
		var l lrlv3.LocalRateLimit
		if err := r.GetResources()[0].UnmarshalTo(&ec); err != nil {
			t.Fatal(err)
		}
		if err := ec.GetTypedConfig().UnmarshalTo(&l); err != nil {
			t.Fatal(err)
		}
		return &l
	}
	// No traffic yet: the pass-through config, answered at once.
	r1, err := ads.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if l := limitOf(r1); l.GetFilterEnabled() != nil {
		t.Fatalf("limit before any traffic: %v", l)
	}
	if err := ads.Send(&discoveryv3.DiscoveryRequest{TypeUrl: xdspush.TypeURL, ResourceNames: names, VersionInfo: r1.GetVersionInfo(), ResponseNonce: r1.GetNonce()}); err != nil {
		t.Fatal(err)
	}

	sendPastMinutes(t, ctx, in.addrs["grpc"], 15, 120)

	// The next version carries the engine's recommendation.
	r2, err := ads.Recv()
	if err != nil {
		t.Fatalf("no push after traffic: %v\n%s", err, in.logs())
	}
	got := limitOf(r2)
	var list struct {
		Recommendations []recommend.Recommendation `json:"recommendations"`
	}
	if err := json.Unmarshal([]byte(httpGetJSON(t, in.url("/api/meshlens/v1/recommendations?service=reviews.default&kind=ratelimit"))), &list); err != nil {
		t.Fatal(err)
	}
	var want *recommend.Setting
	for _, r := range list.Recommendations {
		if r.Service == "reviews.default" && r.Edge == nil {
			want = r.Recommended
		}
	}
	if want == nil {
		t.Fatalf("no reviews rate limit recommended: %+v", list.Recommendations)
	}
	tokens, maxTokens, fill := recommend.EnvoyTokenBucket(want)
	b := got.GetTokenBucket()
	if int(b.GetTokensPerFill().GetValue()) != tokens || int(b.GetMaxTokens()) != maxTokens || b.GetFillInterval().AsDuration() != fill ||
		got.GetFilterEnforced().GetDefaultValue().GetNumerator() != 100 {
		t.Fatalf("pushed %v, engine recommends %.1f req/s burst %d (%d per %v, max %d)", got, want.RatePerSecond, want.Burst, tokens, fill, maxTokens)
	}
	t.Logf("pushed version %s: %.1f req/s, burst %d -> %d tokens per %v, max %d", r2.GetVersionInfo(), want.RatePerSecond, want.Burst, tokens, fill, maxTokens)

	var st struct {
		Serving bool
		History []xdspush.Push
		Nodes   []xdspush.NodeStatus
	}
	if err := json.Unmarshal([]byte(httpGetJSON(t, in.url("/api/meshlens/v1/recommendations/xds?service=reviews"))), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Serving || len(st.History) == 0 || len(st.Nodes) != 1 || st.Nodes[0].SentVersion != r2.GetVersionInfo() {
		t.Fatalf("status %+v", st)
	}
}
