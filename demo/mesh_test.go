package demo

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	alsdata "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	zipkin "github.com/openzipkin/zipkin-go/model"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// calm is a time outside both incidents; the other two are inside one each.
var (
	calm         = time.Date(2026, 11, 27, 12, 0, 30, 0, time.UTC)
	ratingsSlow  = time.Date(2026, 11, 27, 12, 6, 0, 0, time.UTC)
	detailsBurst = time.Date(2026, 11, 27, 12, 2, 30, 0, time.UTC)
)

func fixed(t time.Time) func() time.Time { return func() time.Time { return t } }

func simulate(t *testing.T, seed int64, at time.Time, n int) []*Request {
	t.Helper()
	m := NewMesh(seed, fixed(at))
	out := make([]*Request, n)
	for i := range out {
		out[i] = m.Simulate()
	}
	return out
}

func TestIncidentWindows(t *testing.T) {
	if RatingsSlow(calm) || DetailsOutage(calm) {
		t.Fatal("calm time is inside an incident")
	}
	if !RatingsSlow(ratingsSlow) || DetailsOutage(ratingsSlow) {
		t.Fatal("ratingsSlow time is not (only) inside the ratings slowdown")
	}
	if !DetailsOutage(detailsBurst) || RatingsSlow(detailsBurst) {
		t.Fatal("detailsBurst time is not (only) inside the details outage")
	}
	// Recurrence: 15 and 10 minutes later the same incidents are on.
	if !RatingsSlow(ratingsSlow.Add(15*time.Minute)) || !DetailsOutage(detailsBurst.Add(10*time.Minute)) {
		t.Fatal("incidents do not recur")
	}
}

func addrString(e *alsdata.AccessLogCommon, which string) string {
	var sa interface {
		GetAddress() string
		GetPortValue() uint32
	}
	switch which {
	case "up_remote":
		sa = e.GetUpstreamRemoteAddress().GetSocketAddress()
	case "up_local":
		sa = e.GetUpstreamLocalAddress().GetSocketAddress()
	case "down_remote":
		sa = e.GetDownstreamRemoteAddress().GetSocketAddress()
	case "down_local":
		sa = e.GetDownstreamLocalAddress().GetSocketAddress()
	}
	if sa == nil || sa.GetAddress() == "" {
		return ""
	}
	return sa.GetAddress() + ":" + strconv.Itoa(int(sa.GetPortValue()))
}

var outboundRe = regexp.MustCompile(`^outbound\|(9080|27017)\|\|(productpage|details|reviews|ratings|mongodb)\.default\.svc\.cluster\.local$`)

func isError(h *alsdata.HTTPAccessLogEntry) bool {
	code := h.GetResponse().GetResponseCode().GetValue()
	return code == 0 || code >= 400 || h.GetCommonProperties().GetResponseFlags() != nil ||
		(h.GetResponse().GetResponseTrailers()["grpc-status"] != "" && h.GetResponse().GetResponseTrailers()["grpc-status"] != "0") ||
		(h.GetResponse().GetResponseHeaders()["grpc-status"] != "" && h.GetResponse().GetResponseHeaders()["grpc-status"] != "0")
}

// TestBothSides checks that every hop that reached its server is logged by
// the client's and the server's proxy with matching ids and addresses, and
// that proxy-level failures are logged as Envoy does.
func TestBothSides(t *testing.T) {
	reqs := simulate(t, 42, calm, 4000)
	flags := map[string]int{}
	var grpcSeen, tcpPairs, mtlsPairs, plainPairs, entries, errEntries int
	for _, r := range reqs {
		if r.Start.Add(r.Duration) != calm {
			t.Fatalf("request %s ends at %s, want the clock's now %s", r.ID, r.Start.Add(r.Duration), calm)
		}
		byKey := map[string]Entry{} // inbound entries by "serverIP:port|clientAddr"
		used := map[string]bool{}
		for _, e := range r.Entries {
			c := common(e)
			if c.GetStartTime() == nil || c.GetDuration() == nil {
				t.Fatalf("entry of %s lacks start_time or duration", e.Pod.Name)
			}
			if strings.HasPrefix(c.UpstreamCluster, "inbound|") {
				byKey[addrString(c, "down_local")+"|"+addrString(c, "down_remote")] = e
			}
		}
		for _, e := range r.Entries {
			entries++
			c := common(e)
			if e.HTTP != nil {
				if e.HTTP.Request.RequestId != r.ID {
					t.Fatalf("entry x-request-id %q, want %q", e.HTTP.Request.RequestId, r.ID)
				}
				if isError(e.HTTP) {
					errEntries++
				}
			}
			if strings.HasPrefix(c.UpstreamCluster, "inbound|") {
				continue
			}
			f := ResponseFlagsString(c.ResponseFlags)
			flags[f]++
			switch f {
			case "NR":
				if c.UpstreamCluster != "" || c.UpstreamRemoteAddress != nil {
					t.Errorf("NR entry has upstream_cluster %q / upstream %v", c.UpstreamCluster, c.UpstreamRemoteAddress)
				}
				if e.HTTP.Request.Authority == "" || e.HTTP.Response.GetResponseCode().GetValue() != 404 {
					t.Errorf("NR entry: authority %q code %d", e.HTTP.Request.Authority, e.HTTP.Response.GetResponseCode().GetValue())
				}
				continue
			case "UH":
				if !outboundRe.MatchString(c.UpstreamCluster) || c.UpstreamRemoteAddress != nil {
					t.Errorf("UH entry: cluster %q upstream %v", c.UpstreamCluster, c.UpstreamRemoteAddress)
				}
				continue
			case "UF":
				if c.UpstreamTransportFailureReason == "" || c.UpstreamRemoteAddress == nil {
					t.Errorf("UF entry without failure reason or upstream host")
				}
				continue
			}
			if !outboundRe.MatchString(c.UpstreamCluster) {
				t.Fatalf("outbound entry of %s has upstream_cluster %q", e.Pod.Name, c.UpstreamCluster)
			}
			key := addrString(c, "up_remote") + "|" + addrString(c, "up_local")
			in, ok := byKey[key]
			if !ok {
				t.Fatalf("request %s: outbound entry of %s to %s (flags %s) has no inbound entry", r.ID, e.Pod.Name, key, f)
			}
			used[key] = true
			ic := common(in)
			if ic.UpstreamCluster != "inbound|"+strings.Split(c.UpstreamCluster, "|")[1]+"||" {
				t.Errorf("inbound cluster %q for outbound %q", ic.UpstreamCluster, c.UpstreamCluster)
			}
			if in.Pod.IP != strings.Split(addrString(c, "up_remote"), ":")[0] {
				t.Errorf("inbound logged by %s, outbound went to %s", in.Pod.IP, addrString(c, "up_remote"))
			}
			if f == "UT" {
				if ResponseFlagsString(ic.ResponseFlags) != "DC" {
					t.Errorf("server side of a UT has flags %s, want DC", ResponseFlagsString(ic.ResponseFlags))
				}
			} else if ic.Duration.AsDuration() > c.Duration.AsDuration() {
				t.Errorf("server duration %s exceeds client duration %s", ic.Duration.AsDuration(), c.Duration.AsDuration())
			}
			if e.HTTP != nil {
				if peerName(ic.FilterStateObjects["downstream_peer"]) != e.Pod.Name {
					t.Errorf("server's downstream_peer is not the client pod %s", e.Pod.Name)
				}
				if f == "-" && peerName(c.FilterStateObjects["upstream_peer"]) != in.Pod.Name {
					t.Errorf("client's upstream_peer is not the server pod %s", in.Pod.Name)
				}
			}
			if e.TCP != nil {
				tcpPairs++
				if in.TCP == nil || in.TCP.ConnectionProperties.ReceivedBytes != e.TCP.ConnectionProperties.ReceivedBytes {
					t.Errorf("TCP sides disagree")
				}
				continue
			}
			if in.HTTP.Request.RequestId != e.HTTP.Request.RequestId || in.HTTP.Request.Path != e.HTTP.Request.Path {
				t.Errorf("HTTP sides disagree on request id or path")
			}
			if e.HTTP.Request.Path == "/ratings.Ratings/GetRating" {
				grpcSeen++
				if e.HTTP.ProtocolVersion != alsdata.HTTPAccessLogEntry_HTTP2 || e.HTTP.Request.RequestMethod.String() != "POST" {
					t.Errorf("gRPC entry protocol %v method %v", e.HTTP.ProtocolVersion, e.HTTP.Request.RequestMethod)
				}
				if f == "-" && e.HTTP.Response.ResponseTrailers["grpc-status"] == "" {
					t.Errorf("gRPC entry without grpc-status trailer")
				}
			}
			if tp := ic.TlsProperties; tp != nil {
				mtlsPairs++
				san := tp.GetPeerCertificateProperties().GetSubjectAltName()
				if len(san) != 1 || san[0].GetUri() != e.Pod.Principal() {
					t.Errorf("server sees peer SAN %v, want %s", san, e.Pod.Principal())
				}
			} else {
				plainPairs++
				if e.Pod.App != "loadgen" {
					t.Errorf("plaintext hop from %s, want mTLS", e.Pod.Name)
				}
			}
			if e.Pod.Kind == Sidecar && !strings.HasPrefix(addrString(c, "down_remote"), e.Pod.IP+":") {
				t.Errorf("outbound downstream_remote %s is not the app's address %s", addrString(c, "down_remote"), e.Pod.IP)
			}
		}
		if len(used) != len(byKey) {
			t.Fatalf("request %s has %d inbound entries but only %d match an outbound one", r.ID, len(byKey), len(used))
		}
	}
	for _, f := range []string{"-", "NR", "UH", "UF", "UT"} {
		if flags[f] == 0 {
			t.Errorf("no outbound entry with response flags %s in %d requests (%v)", f, len(reqs), flags)
		}
	}
	if grpcSeen == 0 || tcpPairs == 0 || mtlsPairs == 0 || plainPairs == 0 {
		t.Errorf("missing hop kinds: grpc %d tcp %d mtls %d plaintext %d", grpcSeen, tcpPairs, mtlsPairs, plainPairs)
	}
	rate := float64(errEntries) / float64(entries)
	if rate < 0.005 || rate > 0.08 {
		t.Errorf("error rate %.3f outside a few percent", rate)
	}
	t.Logf("%d entries, %.2f%% errors, flags %v", entries, 100*rate, flags)
}

func peerName(a *anypb.Any) string {
	var st structpb.Struct
	if a == nil || a.UnmarshalTo(&st) != nil {
		return ""
	}
	return st.Fields["name"].GetStringValue()
}

func common(e Entry) *alsdata.AccessLogCommon {
	if e.HTTP != nil {
		return e.HTTP.CommonProperties
	}
	return e.TCP.CommonProperties
}

// TestParentCoversChildren checks that a server's entry spans the calls its
// app made.
func TestParentCoversChildren(t *testing.T) {
	for _, r := range simulate(t, 7, calm, 1000) {
		inbound := map[*Pod]*alsdata.AccessLogCommon{}
		for _, e := range r.Entries {
			if c := common(e); strings.HasPrefix(c.UpstreamCluster, "inbound|") {
				inbound[e.Pod] = c
			}
		}
		for _, e := range r.Entries {
			c := common(e)
			if strings.HasPrefix(c.UpstreamCluster, "inbound|") || e.Pod.Kind == Router || e.Pod.App == "loadgen" {
				continue
			}
			p := inbound[e.Pod]
			if p == nil {
				t.Fatalf("%s made a call but has no inbound entry", e.Pod.Name)
			}
			if p.ResponseFlags != nil {
				continue // the server gave up on its caller
			}
			pStart, cStart := p.StartTime.AsTime(), c.StartTime.AsTime()
			pEnd, cEnd := pStart.Add(p.Duration.AsDuration()), cStart.Add(c.Duration.AsDuration())
			if cStart.Before(pStart) || cEnd.After(pEnd) {
				t.Fatalf("%s: child [%s, %s] not inside parent [%s, %s]", e.Pod.Name, cStart, cEnd, pStart, pEnd)
			}
		}
	}
}

func TestNodeMetadata(t *testing.T) {
	m := NewMesh(1, nil)
	idRe := regexp.MustCompile(`^(sidecar|router)~10\.244\.\d+\.\d+~[a-z0-9-]+\.[a-z-]+~[a-z-]+\.svc\.cluster\.local$`)
	seen := map[string]bool{}
	for _, p := range m.Pods() {
		n := p.Node()
		if !idRe.MatchString(n.Id) || seen[n.Id] {
			t.Errorf("node id %q malformed or duplicate", n.Id)
		}
		seen[n.Id] = true
		if want := p.App + "." + p.Namespace; n.Cluster != want {
			t.Errorf("node cluster %q, want %q", n.Cluster, want)
		}
		f := n.Metadata.GetFields()
		for k, want := range map[string]string{
			"NAME": p.Name, "NAMESPACE": p.Namespace, "WORKLOAD_NAME": p.Workload, "CLUSTER_ID": "Kubernetes",
			"ISTIO_VERSION": IstioVersion, "INSTANCE_IPS": p.IP, "SERVICE_ACCOUNT": p.ServiceAccount, "MESH_ID": "cluster.local",
		} {
			if got := f[k].GetStringValue(); got != want {
				t.Errorf("%s: metadata %s = %q, want %q", p.Name, k, got, want)
			}
		}
		labels := f["LABELS"].GetStructValue().GetFields()
		for k, want := range map[string]string{
			"app": p.App, "version": p.Version,
			"service.istio.io/canonical-name": p.App, "service.istio.io/canonical-revision": p.Version,
		} {
			if got := labels[k].GetStringValue(); got != want {
				t.Errorf("%s: label %s = %q, want %q", p.Name, k, got, want)
			}
		}
	}
	gw := m.Pods()[0]
	if !strings.HasPrefix(gw.NodeID(), "router~") || gw.Namespace != "istio-system" {
		t.Errorf("first pod %s is not the ingress gateway", gw.NodeID())
	}
	if len(m.Pods()) < 14 {
		t.Errorf("only %d pods", len(m.Pods()))
	}
}

// TestSpans checks Envoy's shared span context: the CLIENT half from the
// caller and the SERVER half from the callee carry one span id, parented to
// the caller's own SERVER span.
func TestSpans(t *testing.T) {
	for _, r := range simulate(t, 3, calm, 1000) {
		if !r.Sampled {
			t.Fatal("request not sampled at sampling 1")
		}
		type halves struct{ client, server *zipkin.SpanModel }
		byID := map[zipkin.ID]*halves{}
		serverOf := map[*Pod]zipkin.ID{}
		roots := 0
		for i := range r.Spans {
			s := &r.Spans[i].Model
			if s.TraceID != r.TraceID || s.TraceID.High == 0 {
				t.Fatalf("span trace id %s, want 128-bit %s", s.TraceID, r.TraceID)
			}
			if s.Tags["guid:x-request-id"] != r.ID {
				t.Fatalf("span x-request-id %q, want %q", s.Tags["guid:x-request-id"], r.ID)
			}
			if s.LocalEndpoint.ServiceName != r.Spans[i].Pod.ServiceCluster() || s.Tags["node_id"] != r.Spans[i].Pod.NodeID() {
				t.Fatalf("span local endpoint %q node %q", s.LocalEndpoint.ServiceName, s.Tags["node_id"])
			}
			code, _ := strconv.Atoi(s.Tags["http.status_code"])
			if (code == 0 || code >= 500) && s.Tags["error"] != "true" {
				t.Fatalf("failed span without error tag: %v", s.Tags)
			}
			h := byID[s.ID]
			if h == nil {
				h = &halves{}
				byID[s.ID] = h
			}
			switch s.Kind {
			case zipkin.Client:
				if h.client != nil {
					t.Fatal("two CLIENT spans share an id")
				}
				h.client = s
				if s.ParentID == nil {
					roots++
				}
			case zipkin.Server:
				if h.server != nil || !s.Shared {
					t.Fatal("duplicate or unshared SERVER span")
				}
				h.server = s
				serverOf[r.Spans[i].Pod] = s.ID
			}
		}
		if roots != 1 {
			t.Fatalf("%d root spans", roots)
		}
		for id, h := range byID {
			if h.client == nil {
				t.Fatalf("SERVER span %s without CLIENT half", id)
			}
			if h.server != nil && (h.server.ParentID == nil) != (h.client.ParentID == nil) {
				t.Fatal("halves disagree on the parent")
			}
			if h.server != nil && h.client.ParentID != nil && *h.server.ParentID != *h.client.ParentID {
				t.Fatal("halves have different parents")
			}
		}
		for i := range r.Spans {
			s := r.Spans[i].Model
			if s.Kind == zipkin.Client && s.ParentID != nil && serverOf[r.Spans[i].Pod] != *s.ParentID {
				t.Fatalf("CLIENT span of %s has parent %s, want its SERVER span %s", r.Spans[i].Pod.Name, s.ParentID, serverOf[r.Spans[i].Pod])
			}
		}
	}
}

func TestTraceSampling(t *testing.T) {
	m := NewMesh(5, fixed(calm))
	m.SetTraceSampling(0.1)
	sampled := 0
	for range 2000 {
		r := m.Simulate()
		if r.Sampled {
			sampled++
		} else if len(r.Spans) != 0 {
			t.Fatal("unsampled request has spans")
		}
	}
	if sampled < 140 || sampled > 260 {
		t.Errorf("%d of 2000 sampled at 0.1", sampled)
	}
}

// TestIncidents drives the clock into each incident window and checks that
// the incident shows in the entries the affected service's proxies log.
func TestIncidents(t *testing.T) {
	ratingsMedian := func(at time.Time) time.Duration {
		var d []time.Duration
		for _, r := range simulate(t, 11, at, 1500) {
			for _, e := range r.Entries {
				if e.HTTP != nil && e.Pod.App == "ratings" && e.HTTP.CommonProperties.ResponseFlags == nil {
					d = append(d, e.HTTP.CommonProperties.Duration.AsDuration())
				}
			}
		}
		slices.Sort(d)
		return d[len(d)/2]
	}
	details503 := func(at time.Time) float64 {
		n, bad := 0, 0
		for _, r := range simulate(t, 11, at, 1500) {
			for _, e := range r.Entries {
				if e.HTTP != nil && e.Pod.App == "details" {
					n++
					if e.HTTP.Response.GetResponseCode().GetValue() == 503 {
						bad++
					}
				}
			}
		}
		return float64(bad) / float64(n)
	}
	calmRatings, slowRatings := ratingsMedian(calm), ratingsMedian(ratingsSlow)
	if ratio := float64(slowRatings) / float64(calmRatings); ratio < 5 {
		t.Errorf("ratings median %s in the slowdown vs %s calm: ×%.1f, want ≥ ×5", slowRatings, calmRatings, ratio)
	}
	if r := details503(calm); r > 0.02 {
		t.Errorf("details 503 rate %.3f outside the outage", r)
	}
	if r := details503(detailsBurst); r < 0.2 || r > 0.4 {
		t.Errorf("details 503 rate %.3f inside the outage, want about %.1f", r, DetailsOutageErrorRate)
	}
	if r := details503(ratingsSlow); r > 0.02 {
		t.Errorf("details 503 rate %.3f during the ratings slowdown", r)
	}
}

func TestDeterministic(t *testing.T) {
	a, b := simulate(t, 99, calm, 50), simulate(t, 99, calm, 50)
	c := simulate(t, 100, calm, 50)
	same := func(x, y []*Request) bool {
		for i := range x {
			if x[i].ID != y[i].ID || len(x[i].Entries) != len(y[i].Entries) {
				return false
			}
			for j := range x[i].Entries {
				if !proto.Equal(x[i].Entries[j].HTTP, y[i].Entries[j].HTTP) || !proto.Equal(x[i].Entries[j].TCP, y[i].Entries[j].TCP) {
					return false
				}
			}
		}
		return true
	}
	if !same(a, b) {
		t.Error("same seed and clock gave different traffic")
	}
	if same(a, c) {
		t.Error("different seeds gave the same traffic")
	}
}

func BenchmarkSimulate(b *testing.B) {
	b.ReportAllocs()
	m := NewMesh(1, fixed(calm))
	entries := 0
	for b.Loop() {
		entries += len(m.Simulate().Entries)
	}
	b.ReportMetric(float64(entries)/b.Elapsed().Seconds(), "entries/s")
}

func BenchmarkPregenerateAndMarshal(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		logs := NewMesh(1, fixed(calm)).Pregenerate(100, 50)
		for _, l := range logs {
			for _, msg := range l.Messages {
				if _, err := proto.Marshal(msg); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}
