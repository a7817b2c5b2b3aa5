package envoyals

import (
	"testing"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshlens/meshlens/model"
)

// entryFromProto builds an entry from the generated types: a second,
// independent reading of the same bytes that the wire decoder is checked
// against.
func entryFromProto(cm *accesslogv3.AccessLogCommon) entry {
	var e entry
	if st := cm.GetStartTime(); st != nil {
		e.hasStart, e.startSec, e.startNanos = true, st.GetSeconds(), st.GetNanos()
	}
	if d := cm.GetTimeToLastDownstreamTxByte(); d != nil {
		e.hasTTLDTx, e.ttldtx = true, durationParts{d.GetSeconds(), d.GetNanos()}
	}
	if d := cm.GetDuration(); d != nil {
		e.hasDur, e.dur = true, durationParts{d.GetSeconds(), d.GetNanos()}
	}
	e.downRemoteIP = cm.GetDownstreamRemoteAddress().GetSocketAddress().GetAddress()
	e.downLocalIP = cm.GetDownstreamLocalAddress().GetSocketAddress().GetAddress()
	e.upRemoteIP = cm.GetUpstreamRemoteAddress().GetSocketAddress().GetAddress()
	e.upRemotePort = cm.GetUpstreamRemoteAddress().GetSocketAddress().GetPortValue()
	e.upstreamCluster = cm.GetUpstreamCluster()
	e.flags = flagMask(cm.GetResponseFlags())
	t := cm.GetTlsProperties()
	switch {
	case t == nil:
	case t.GetPeerCertificateProperties() != nil && (len(t.GetPeerCertificateProperties().GetSubjectAltName()) > 0 || t.GetPeerCertificateProperties().GetSubject() != ""):
		e.tls = model.TLSMutual
	case t.GetTlsVersion() != 0 || t.GetTlsSniHostname() != "" || t.GetTlsCipherSuite() != nil || t.GetLocalCertificateProperties() != nil:
		e.tls = model.TLSSimple
	}
	uri := func(cp *accesslogv3.TLSProperties_CertificateProperties) string {
		for _, s := range cp.GetSubjectAltName() {
			if u := s.GetUri(); u != "" {
				return u
			}
		}
		return ""
	}
	e.peerPrincipal = uri(t.GetPeerCertificateProperties())
	e.localPri = uri(t.GetLocalCertificateProperties())
	fs := cm.GetFilterStateObjects()
	pick := func(k, wasm string) fsValue {
		a := fs[k]
		if a == nil {
			a = fs[wasm]
		}
		if a == nil {
			return fsValue{}
		}
		switch a.GetTypeUrl() {
		case typeStruct, typeBytesValue, typeStringValue:
			return fsValue{a.GetTypeUrl(), a.GetValue()}
		}
		return fsValue{value: a.GetValue()}
	}
	e.upPeer = pick(fsUpstreamPeer, fsWasmUpstreamPeer)
	e.downPeer = pick(fsDownstreamPeer, fsWasmDownstreamPeer)
	e.intermediate = cm.GetIntermediateLogEntry()
	e.logType = int32(cm.GetAccessLogType())
	return e
}

func entryFromHTTP(h *accesslogv3.HTTPAccessLogEntry) entry {
	e := entryFromProto(h.GetCommonProperties())
	e.protoVersion = int32(h.GetProtocolVersion())
	req, resp := h.GetRequest(), h.GetResponse()
	e.method = int32(req.GetRequestMethod())
	e.authority, e.path, e.requestID = req.GetAuthority(), req.GetPath(), req.GetRequestId()
	e.reqBytes = req.GetRequestHeadersBytes() + req.GetRequestBodyBytes()
	e.contentType = req.GetRequestHeaders()["content-type"]
	e.respCode = resp.GetResponseCode().GetValue()
	e.respBytes = resp.GetResponseHeadersBytes() + resp.GetResponseBodyBytes()
	if v, ok := resp.GetResponseTrailers()["grpc-status"]; ok {
		e.grpcStatus, e.grpcInHdr = v, true
	} else if v, ok := resp.GetResponseHeaders()["grpc-status"]; ok {
		e.grpcStatus, e.grpcInHdr = v, true
	}
	return e
}

// convertBoth converts the serialized entry through the wire decoder and
// through the generated types, for the given node.
func convertBoth(t testing.TB, b []byte, p proxyInfo) (wire, ref []model.Call, wireErr, refErr error) {
	cfg := DefaultConfig()
	var h accesslogv3.HTTPAccessLogEntry
	if err := proto.Unmarshal(b, &h); err != nil {
		t.Fatalf("reference unmarshal: %v", err)
	}
	c1 := newConverter(&cfg, p)
	var e entry
	if err := decodeHTTP(b, &e, &c1.strs); err != nil {
		return nil, nil, err, nil
	}
	wire, wireErr = c1.appendHTTP(nil, &e)
	c2 := newConverter(&cfg, p)
	re := entryFromHTTP(&h)
	ref, refErr = c2.appendHTTP(nil, &re)
	return
}

func TestWireDecoderMatchesGeneratedTypes(t *testing.T) {
	cfg := DefaultConfig()
	nodes := []proxyInfo{
		parseNode(productpage, cfg.ServiceLabels, cfg.TrustDomain),
		parseNode(reviewsV1, cfg.ServiceLabels, cfg.TrustDomain),
		parseNode(ingressGW, cfg.ServiceLabels, cfg.TrustDomain),
	}
	entries := []*accesslogv3.HTTPAccessLogEntry{
		httpEntry(),
		httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
			cm := e.CommonProperties
			cm.UpstreamCluster = "inbound|9080||"
			cm.DownstreamLocalAddress = sockAddr("10.0.0.20", 9080)
			cm.TlsProperties = mtls("default", "a", "default", "b")
			cm.FilterStateObjects = map[string]*anypb.Any{
				"downstream_peer":      peerStruct("productpage-v1", "default", "productpage", "v1"),
				"wasm.downstream_peer": wasmPeer(seedFlatNode()),
				"upstream_peer":        {TypeUrl: "type.googleapis.com/other", Value: []byte{1}},
			}
			cm.ResponseFlags = &accesslogv3.ResponseFlags{UpstreamRequestTimeout: true, UpstreamRetryLimitExceeded: true,
				UnauthorizedDetails: &accesslogv3.ResponseFlags_Unauthorized{}}
			cm.AccessLogType = accesslogv3.AccessLogType_DownstreamEnd
		}),
		httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
			e.ProtocolVersion = accesslogv3.HTTPAccessLogEntry_HTTP2
			e.Request.RequestMethod = 3
			e.Request.Path = "/a.B/C"
			e.Request.RequestHeaders = map[string]string{"content-type": "application/grpc", "x": "y"}
			e.Response.ResponseHeaders = map[string]string{"grpc-status": "2"}
			e.Response.ResponseTrailers = map[string]string{"grpc-status": "5"}
			e.CommonProperties.Duration = e.CommonProperties.TimeToLastDownstreamTxByte
			e.CommonProperties.TimeToLastDownstreamTxByte = nil
			e.CommonProperties.TlsProperties = &accesslogv3.TLSProperties{TlsSniHostname: "x"}
		}),
		httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
			e.CommonProperties.StartTime = nil
		}),
		httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
			e.CommonProperties.IntermediateLogEntry = true
		}),
		httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
			e.CommonProperties.UpstreamCluster = ""
			e.CommonProperties.DownstreamLocalAddress = sockAddr("10.0.0.20", 9080)
			e.Response.ResponseCode = nil
		}),
	}
	for i, he := range entries {
		b, err := proto.Marshal(he)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range nodes {
			w, r, we, re := convertBoth(t, b, p)
			if (we == nil) != (re == nil) || len(w) != len(r) {
				t.Fatalf("entry %d node %s: wire %v %v, reference %v %v", i, p.nodeID, w, we, r, re)
			}
			for j := range w {
				if w[j] != r[j] {
					t.Errorf("entry %d node %s call %d:\n wire %+v\n  ref %+v", i, p.nodeID, j, w[j], r[j])
				}
			}
		}
	}
}
