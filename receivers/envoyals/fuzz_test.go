package envoyals

import (
	"testing"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlens/meshlens/model"
)

func seedFlatNode() []byte {
	return flatNode(
		fbField{slot: fnName, str: "productpage-v1-5b8d6"},
		fbField{slot: fnNamespace, str: "default"},
		fbField{slot: fnLabels, labels: [][2]string{{"app", "productpage"}, {"version", "v1"}}},
		fbField{slot: fnWorkloadName, str: "productpage-v1"},
		fbField{slot: fnInstanceIPs, strs: []string{"10.0.0.10"}},
	)
}

func checkCalls(t *testing.T, calls []model.Call) {
	for _, c := range calls {
		if c.Start.IsZero() {
			t.Fatalf("call without start time: %+v", c)
		}
		if c.GRPCStatus < -1 || c.GRPCStatus > 16 {
			t.Fatalf("gRPC status %d out of range", c.GRPCStatus)
		}
		if c.Duration < 0 {
			t.Fatalf("negative duration %v", c.Duration)
		}
	}
}

// FuzzHTTPEntry feeds arbitrary bytes as an HTTPAccessLogEntry through the
// entry -> Call conversion for each proxy role.
func FuzzHTTPEntry(f *testing.F) {
	for _, e := range []*accesslogv3.HTTPAccessLogEntry{
		httpEntry(),
		httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
			e.CommonProperties.FilterStateObjects = map[string]*anypb.Any{
				"upstream_peer":        peerStruct("reviews-v2", "default", "reviews", "v2"),
				"wasm.downstream_peer": wasmPeer(seedFlatNode()),
			}
			e.CommonProperties.ResponseFlags = &accesslogv3.ResponseFlags{NoRouteFound: true, DownstreamRemoteReset: true}
			e.Response.ResponseTrailers = map[string]string{"grpc-status": "99"}
		}),
		httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) { e.CommonProperties.StartTime = nil }),
	} {
		b, _ := proto.Marshal(e)
		f.Add(b, uint8(0))
	}
	cfg := DefaultConfig()
	f.Fuzz(func(t *testing.T, b []byte, role uint8) {
		p := parseNode(productpage, cfg.ServiceLabels, cfg.TrustDomain)
		switch role % 3 {
		case 1:
			p = parseNode(ingressGW, cfg.ServiceLabels, cfg.TrustDomain)
		case 2:
			p.role = RoleWaypoint
		}
		c := newConverter(&cfg, p)
		var e entry
		if decodeHTTP(b, &e, &c.strs) != nil {
			return
		}
		calls, err := c.appendHTTP(nil, &e)
		if err == nil && len(calls) == 0 {
			t.Fatal("no error and no call")
		}
		checkCalls(t, calls)
	})
}

// FuzzTCPEntry does the same for TCP entries.
func FuzzTCPEntry(f *testing.F) {
	e := &accesslogv3.TCPAccessLogEntry{
		CommonProperties:     httpEntry().CommonProperties,
		ConnectionProperties: &accesslogv3.ConnectionProperties{ReceivedBytes: 1, SentBytes: 2},
	}
	b, _ := proto.Marshal(e)
	f.Add(b)
	cfg := DefaultConfig()
	f.Fuzz(func(t *testing.T, b []byte) {
		c := newConverter(&cfg, parseNode(reviewsV1, cfg.ServiceLabels, cfg.TrustDomain))
		var e entry
		if decodeTCP(b, &e, &c.strs) != nil {
			return
		}
		calls, err := c.appendTCP(nil, &e)
		if err == nil && len(calls) != 1 {
			t.Fatalf("sidecar TCP entry gave %d calls", len(calls))
		}
		checkCalls(t, calls)
	})
}

// FuzzFlatNode checks the hand-written FlatBuffer decoder never reads out
// of bounds, whatever the bytes.
func FuzzFlatNode(f *testing.F) {
	good := seedFlatNode()
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Add([]byte{4, 0, 0, 0, 0xfc, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var pf peerFields
		if err := peerFromFlatNode(b, &pf); err == nil {
			_ = pf.toIdentity([]string{labelCanonicalName, labelApp})
		}
	})
}

// FuzzPeerMetadata decodes arbitrary filter state values of each type.
func FuzzPeerMetadata(f *testing.F) {
	a := peerStruct("reviews-v1", "default", "reviews", "v1")
	f.Add(a.Value, uint8(0))
	f.Add(wasmPeer(seedFlatNode()).Value, uint8(1))
	s, _ := structpb.NewStruct(map[string]any{"NAME": "p", "LABELS": map[string]any{"app": "x"}})
	sb, _ := proto.Marshal(s)
	f.Add(sb, uint8(0))
	f.Add([]byte("\n\x1aworkload=reviews-v1,name=r"), uint8(2))
	types := []string{typeStruct, typeBytesValue, typeStringValue}
	f.Fuzz(func(t *testing.T, b []byte, typ uint8) {
		id, err := decodePeer(&anypb.Any{TypeUrl: types[int(typ)%3], Value: b}, []string{labelCanonicalName, labelApp})
		if err == nil && id.Service == "" && id.Instance == "" && id.Workload == "" {
			// Allowed: labels only. Nothing else to check beyond no panic.
			_ = id
		}
	})
}

func TestFlatNodeDecode(t *testing.T) {
	var pf peerFields
	if err := peerFromFlatNode(seedFlatNode(), &pf); err != nil {
		t.Fatal(err)
	}
	id := pf.toIdentity([]string{labelCanonicalName, labelApp})
	want := model.Identity{Service: "productpage", Namespace: "default", Workload: "productpage-v1",
		Version: "v1", Instance: "productpage-v1-5b8d6", IP: "10.0.0.10"}
	if id != want {
		t.Errorf("got %+v\nwant %+v", id, want)
	}
	// Every truncation must fail cleanly or decode a prefix, never panic.
	good := seedFlatNode()
	for i := range good {
		var pf peerFields
		_ = peerFromFlatNode(good[:i], &pf)
	}
}

func TestPeerStringPairs(t *testing.T) {
	v, _ := proto.Marshal(&structpb.Value{}) // not a StringValue: must not crash
	_, _ = decodePeer(&anypb.Any{TypeUrl: typeStringValue, Value: v}, nil)
	var pf peerFields
	peerFromPairs("type=deployment,workload=reviews-v1,name=reviews-v1-x,namespace=default,service=reviews,revision=v1", &pf)
	id := pf.toIdentity([]string{labelCanonicalName, labelApp})
	if id.Service != "reviews" || id.Version != "v1" || id.Instance != "reviews-v1-x" || id.Namespace != "default" {
		t.Errorf("pairs: %+v", id)
	}
}

func TestFlagString(t *testing.T) {
	cases := []struct {
		f    *accesslogv3.ResponseFlags
		want string
	}{
		{nil, ""},
		{&accesslogv3.ResponseFlags{}, ""},
		{&accesslogv3.ResponseFlags{UpstreamRequestTimeout: true}, "UT"},
		{&accesslogv3.ResponseFlags{UpstreamRetryLimitExceeded: true, UpstreamRequestTimeout: true}, "UT,URX"},
		{&accesslogv3.ResponseFlags{DownstreamConnectionTermination: true, UpstreamConnectionTermination: true}, "UC,DC"},
		{&accesslogv3.ResponseFlags{UnauthorizedDetails: &accesslogv3.ResponseFlags_Unauthorized{}}, "UAEX"},
		{&accesslogv3.ResponseFlags{OverloadManager: true, DnsResolutionFailure: true, NoFilterConfigFound: true}, "NFCF,OM,DF"},
		{&accesslogv3.ResponseFlags{RateLimited: true, RateLimitServiceError: true, FaultInjected: true, DelayInjected: true}, "DI,FI,RL,RLSE"},
		{&accesslogv3.ResponseFlags{InvalidEnvoyRequestHeaders: true, StreamIdleTimeout: true, DownstreamProtocolError: true, UpstreamProtocolError: true, UpstreamMaxStreamDurationReached: true}, "SI,IH,DPE,UMSDR,UPE"},
		{&accesslogv3.ResponseFlags{LocalReset: true, FailedLocalHealthcheck: true, UpstreamOverflow: true}, "LH,LR,UO"},
	}
	for _, tc := range cases {
		if got := flagString(flagMask(tc.f)); got != tc.want {
			t.Errorf("flags %v: got %q want %q", tc.f, got, tc.want)
		}
	}
}

// FuzzMessage feeds arbitrary bytes to the message splitter and entry
// decoders: they must return an error or entries, never panic or loop.
func FuzzMessage(f *testing.F) {
	b, _ := proto.Marshal(httpMsg(productpage, httpEntry(), httpEntry()))
	f.Add(b)
	b, _ = proto.Marshal(tcpMsg(productpage, &accesslogv3.TCPAccessLogEntry{CommonProperties: httpEntry().CommonProperties}))
	f.Add(b)
	f.Add([]byte{0x12, 0x03, 0x0a, 0x01, 0xff})
	cfg := DefaultConfig()
	f.Fuzz(func(t *testing.T, b []byte) {
		var m message
		if splitMessage(b, &m) != nil {
			return
		}
		c := newConverter(&cfg, parseNode(ingressGW, cfg.ServiceLabels, cfg.TrustDomain))
		var e entry
		for _, raw := range m.http {
			if decodeHTTP(raw, &e, &c.strs) == nil {
				calls, _ := c.appendHTTP(nil, &e)
				checkCalls(t, calls)
			}
		}
		for _, raw := range m.tcp {
			if decodeTCP(raw, &e, &c.strs) == nil {
				calls, _ := c.appendTCP(nil, &e)
				checkCalls(t, calls)
			}
		}
	})
}

// FuzzWireMatchesReference checks the wire decoder against the generated
// types on mutations of a realistic entry. Inputs the generated decoder
// rejects are skipped; so are inputs that repeat a singular sub-message,
// whose protobuf merge semantics the wire decoder does not replicate in
// full (they never come from Envoy).
func FuzzWireMatchesReference(f *testing.F) {
	b, _ := proto.Marshal(httpEntry())
	f.Add(b)
	cfg := DefaultConfig()
	p := parseNode(productpage, cfg.ServiceLabels, cfg.TrustDomain)
	f.Fuzz(func(t *testing.T, b []byte) {
		var h accesslogv3.HTTPAccessLogEntry
		if proto.Unmarshal(b, &h) != nil || proto.Size(&h) != len(b) {
			return // rejected, or not canonical (repeated/unknown/out-of-order fields)
		}
		canon, err := proto.MarshalOptions{Deterministic: true}.Marshal(&h)
		if err != nil {
			return
		}
		w, r, we, re := convertBoth(t, canon, p)
		if (we == nil) != (re == nil) || len(w) != len(r) {
			t.Fatalf("wire %v %v, reference %v %v", w, we, r, re)
		}
		for j := range w {
			if w[j] != r[j] {
				t.Fatalf("call %d:\n wire %+v\n  ref %+v", j, w[j], r[j])
			}
		}
	})
}
