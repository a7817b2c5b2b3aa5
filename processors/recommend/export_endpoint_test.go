package recommend

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	localrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	"google.golang.org/protobuf/encoding/protojson"
	istionet "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	"sigs.k8s.io/yaml"
)

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		ep, method, exact, regex string
		match, noMatch           []string // :path values, query included
		err                      string
	}{
		{ep: "GET:/reviews", method: "GET", exact: "/reviews",
			match: []string{"/reviews", "/reviews?x=1"}, noMatch: []string{"/reviews/1", "/reviewsx"}},
		{ep: "GET:/api/users/{id}", method: "GET", regex: `/api/users/[^/?]+`,
			match: []string{"/api/users/42", "/api/users/42?full=1"}, noMatch: []string{"/api/users/", "/api/users/42/orders", "/api/users"}},
		{ep: "POST:/a.b/{param}/c", method: "POST", regex: `/a\.b/[^/?]+/c`,
			match: []string{"/a.b/x/c"}, noMatch: []string{"/aXb/x/c", "/a.b/x/y/c"}},
		{ep: "GET:/static/{rest}", method: "GET", regex: `/static/[^?]*`,
			match: []string{"/static/a/b/c.js", "/static/?v=2"}, noMatch: []string{"/other/a"}},
		{ep: "/hipstershop.CartService/GetCart", exact: "/hipstershop.CartService/GetCart",
			match: []string{"/hipstershop.CartService/GetCart"}, noMatch: []string{"/hipstershop.CartService/EmptyCart"}},
		{ep: "", err: "not a path"},
		{ep: "tcp", err: "not a path"},
		{ep: "get:/lower", err: "not a path"},
		{ep: "GET:/a?b=1", err: "query"},
		{ep: "GET:/a/{id", err: "unterminated"},
	} {
		t.Run(tc.ep, func(t *testing.T) {
			m, err := parseEndpoint(tc.ep)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.method != tc.method || m.exact != tc.exact || m.regex != tc.regex {
				t.Fatalf("got method %q exact %q regex %q, want %q %q %q", m.method, m.exact, m.regex, tc.method, tc.exact, tc.regex)
			}
			// Envoy's regex matchers match the whole input.
			re := regexp.MustCompile("^(?:" + m.pathHeaderRegex + ")$")
			for _, p := range tc.match {
				if !re.MatchString(p) {
					t.Errorf("%q does not match %q", m.pathHeaderRegex, p)
				}
			}
			for _, p := range tc.noMatch {
				if re.MatchString(p) {
					t.Errorf("%q matches %q", m.pathHeaderRegex, p)
				}
			}
		})
	}
}

// splitDocs parses the rendered YAML stream back into Istio objects.
func splitDocs(t *testing.T, b []byte) (vss []*networkingv1.VirtualService, efs []*networkingv1alpha3.EnvoyFilter) {
	t.Helper()
	for _, doc := range bytes.Split(b, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("document does not parse: %v\n%s", err, doc)
		}
		switch meta.Kind {
		case "VirtualService":
			vs := &networkingv1.VirtualService{}
			if err := yaml.Unmarshal(doc, vs); err != nil {
				t.Fatal(err)
			}
			vss = append(vss, vs)
		case "EnvoyFilter":
			ef := &networkingv1alpha3.EnvoyFilter{}
			if err := yaml.Unmarshal(doc, ef); err != nil {
				t.Fatal(err)
			}
			efs = append(efs, ef)
		}
	}
	return vss, efs
}

func TestRenderPerEndpoint(t *testing.T) {
	edge := func(ep string) *Edge {
		return &Edge{Source: "productpage.default", Destination: "reviews.default", Endpoint: ep}
	}
	recs := []Recommendation{
		{Kind: KindTimeout, Service: "reviews.default", Edge: edge(""), Recommended: &Setting{TimeoutMs: 80}, Evidence: &Evidence{P99Ms: 40}},
		{Kind: KindRetry, Service: "reviews.default", Edge: edge(""),
			Recommended: &Setting{Retries: 2, PerTryTimeoutMs: 30, BackoffMs: 25, RetryOn: "connect-failure,503", RetryBudgetPercent: 20, MinRetryConcurrency: 1},
			Evidence:    &Evidence{}},
		// A slow endpoint needs a longer timeout than the edge's.
		{Kind: KindTimeout, Service: "reviews.default", Edge: edge("GET:/reviews/{id}"), Recommended: &Setting{TimeoutMs: 450}, Evidence: &Evidence{P99Ms: 300}},
		{Kind: KindTimeout, Service: "reviews.default", Edge: edge("/reviews.Reviews/List"), Recommended: &Setting{TimeoutMs: 60}, Evidence: &Evidence{P99Ms: 30}},
		{Kind: KindTimeout, Service: "reviews.default", Edge: edge("GET:/broken/{id"), Recommended: &Setting{TimeoutMs: 60}, Evidence: &Evidence{P99Ms: 30}},
		{Kind: KindRateLimit, Service: "reviews.default", Recommended: &Setting{RatePerSecond: 100, Burst: 20, MaxConcurrency: 16}},
		{Kind: KindRateLimit, Service: "reviews.default", Edge: &Edge{Destination: "reviews.default", Endpoint: "GET:/reviews/{id}"},
			Recommended: &Setting{RatePerSecond: 30, Burst: 6}},
	}
	b, err := RenderIstioYAML(recs)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"GET:/broken/{id": unterminated placeholder; no endpoint route written`) {
		t.Errorf("the unmatchable endpoint is not reported:\n%s", b)
	}
	vss, efs := splitDocs(t, b)
	if len(vss) != 1 || len(efs) != 1 {
		t.Fatalf("%d VirtualServices and %d EnvoyFilters, want 1 and 1:\n%s", len(vss), len(efs), b)
	}
	routes := vss[0].Spec.GetHttp()
	if len(routes) != 4 {
		t.Fatalf("%d routes, want 2 endpoint routes, the caller's and the default:\n%s", len(routes), b)
	}
	// Endpoint routes come first, so they win over the caller's route.
	grpc, slow, caller := routes[0], routes[1], routes[2]
	if m := grpc.GetMatch(); len(m) != 1 || m[0].GetUri().GetExact() != "/reviews.Reviews/List" || m[0].GetMethod() != nil ||
		m[0].GetSourceLabels()["app"] != "productpage" || grpc.GetTimeout().AsDuration().Milliseconds() != 60 {
		t.Errorf("gRPC endpoint route: %v", grpc)
	}
	if m := slow.GetMatch(); len(m) != 1 || m[0].GetUri().GetRegex() != `/reviews/[^/?]+` || m[0].GetMethod().GetExact() != "GET" ||
		m[0].GetSourceLabels()["app"] != "productpage" || slow.GetTimeout().AsDuration().Milliseconds() != 450 {
		t.Errorf("slow endpoint route: %v", slow)
	}
	// The caller's 30 ms per-try timeout would cut the slow endpoint's
	// requests: only a fast-failure retry carries over.
	if r := slow.GetRetries(); r == nil || r.GetPerTryTimeout() != nil || r.GetAttempts() != 1 || r.GetRetryOn() != "connect-failure,503" {
		t.Errorf("slow endpoint retries: %v", r)
	}
	if caller.GetName() != "from-productpage" || len(caller.GetMatch()) != 1 || caller.GetMatch()[0].GetUri() != nil ||
		caller.GetTimeout().AsDuration().Milliseconds() != 80 || caller.GetRetries().GetAttempts() != 2 {
		t.Errorf("caller route: %v", caller)
	}
	names := map[string]bool{}
	for _, r := range routes {
		if names[r.GetName()] {
			t.Errorf("duplicate route name %q", r.GetName())
		}
		names[r.GetName()] = true
	}

	// The EnvoyFilter's typed_config must be a valid LocalRateLimit for
	// go-control-plane, with the endpoint's descriptor and its action.
	patch := efs[0].Spec.GetConfigPatches()
	if len(patch) != 1 {
		t.Fatalf("%d patches", len(patch))
	}
	tc := patch[0].GetPatch().GetValue().GetFields()["typed_config"].GetStructValue()
	if tc == nil {
		t.Fatalf("no typed_config in %v", patch[0])
	}
	delete(tc.Fields, "@type")
	js, err := protojson.Marshal(tc)
	if err != nil {
		t.Fatal(err)
	}
	var lrl localrlv3.LocalRateLimit
	if err := protojson.Unmarshal(js, &lrl); err != nil {
		t.Fatalf("typed_config is not a LocalRateLimit: %v\n%s", err, js)
	}
	if err := lrl.ValidateAll(); err != nil {
		t.Fatalf("LocalRateLimit does not validate: %v", err)
	}
	if tb := lrl.GetTokenBucket(); tb.GetTokensPerFill().GetValue() != 10 || tb.GetFillInterval().AsDuration().Milliseconds() != 100 {
		t.Errorf("service bucket: %v", tb)
	}
	ds := lrl.GetDescriptors()
	if len(ds) != 1 || len(ds[0].GetEntries()) != 1 || ds[0].GetEntries()[0].GetKey() != endpointDescriptorKey ||
		ds[0].GetEntries()[0].GetValue() != "GET:/reviews/{id}" || ds[0].GetTokenBucket().GetTokensPerFill().GetValue() != 3 {
		t.Fatalf("descriptors: %v", ds)
	}
	rl := lrl.GetRateLimits()
	if len(rl) != 1 || len(rl[0].GetActions()) != 1 {
		t.Fatalf("rate_limits: %v", rl)
	}
	hv := rl[0].GetActions()[0].GetHeaderValueMatch()
	if hv.GetDescriptorKey() != endpointDescriptorKey || hv.GetDescriptorValue() != "GET:/reviews/{id}" || len(hv.GetHeaders()) != 2 {
		t.Fatalf("header_value_match: %v", hv)
	}
	re := regexp.MustCompile("^(?:" + hv.GetHeaders()[0].GetStringMatch().GetSafeRegex().GetRegex() + ")$")
	if hv.GetHeaders()[0].GetName() != ":path" || !re.MatchString("/reviews/7?x=1") || re.MatchString("/ratings/7") {
		t.Errorf(":path matcher %v", hv.GetHeaders()[0])
	}
	if hv.GetHeaders()[1].GetName() != ":method" || hv.GetHeaders()[1].GetStringMatch().GetExact() != "GET" {
		t.Errorf(":method matcher %v", hv.GetHeaders()[1])
	}

	// Read back, the service's route is the caller's, not an endpoint's.
	c := NewCurrentConfig()
	if err := c.AddYAML(b, "rendered"); err != nil {
		t.Fatal(err)
	}
	if r := c.Routes["reviews.default"]; r == nil || r.Timeout.Milliseconds() != 80 || r.Retries != 2 {
		t.Fatalf("route read back: %+v", r)
	}
	if l := c.Limits["reviews.default"]; l == nil || l.RatePerSecond != 100 {
		t.Fatalf("limit read back: %+v", l)
	}

	// Per-endpoint diff: with the rendered configuration in force, no
	// endpoint timeout differs; with only the service-wide routes (the
	// endpoint routes removed), the slow endpoint's 450 ms is compared with
	// the caller's 80 ms route, which is what its requests get.
	for _, d := range DiffConfig(c, recs) {
		if strings.Contains(d.Field, "GET:/reviews/{id}") || strings.Contains(d.Field, "/reviews.Reviews/List") {
			t.Errorf("endpoint differs after applying the export: %+v", d)
		}
	}
	if rs, scoped := c.EndpointRoute("reviews.default", "productpage", "GET:/reviews/{id}"); rs == nil || !scoped || rs.Timeout.Milliseconds() != 450 {
		t.Errorf("endpoint route read back: %+v scoped=%v", rs, scoped)
	}
	if rs, scoped := c.EndpointRoute("reviews.default", "productpage", "GET:/other"); rs == nil || scoped || rs.Timeout.Milliseconds() != 80 {
		t.Errorf("an endpoint without its own route gets the caller's: %+v scoped=%v", rs, scoped)
	}
	if rs, _ := c.EndpointRoute("reviews.default", "details", "GET:/reviews/{id}"); rs == nil || rs.Timeout.Milliseconds() == 450 {
		t.Errorf("another caller's requests must not get productpage's endpoint route: %+v", rs)
	}
	svcOnly := NewCurrentConfig()
	var kept []*istionet.HTTPRoute
	for _, r := range routes {
		if !pathScoped(r) {
			kept = append(kept, r)
		}
	}
	vs := vss[0]
	vs.Spec.Http = kept
	svcOnly.addVS(vs, "edited")
	var got *DiffEntry
	for _, d := range DiffConfig(svcOnly, recs) {
		if d.Field == "http[from productpage.default, GET:/reviews/{id}].timeout" {
			got = &d
		}
	}
	if got == nil || got.Current != "80ms" || got.Recommended != "450ms" || !strings.Contains(got.Reason, "service-wide route") {
		t.Fatalf("slow endpoint diff against the service-wide route: %+v\n%s", got, FormatDiff(DiffConfig(svcOnly, recs)))
	}
}
