package envoyals

import (
	"encoding/binary"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func istioNode(kind, ip, pod, ns, app, version string) *corev3.Node {
	md, err := structpb.NewStruct(map[string]any{
		"NAME":            pod,
		"NAMESPACE":       ns,
		"WORKLOAD_NAME":   app + "-" + version,
		"CLUSTER_ID":      "Kubernetes",
		"SERVICE_ACCOUNT": "bookinfo-" + app,
		"INSTANCE_IPS":    ip + ",fe80::1",
		"LABELS": map[string]any{
			"app":                                 app,
			"version":                             version,
			"service.istio.io/canonical-name":     app,
			"service.istio.io/canonical-revision": version,
		},
	})
	if err != nil {
		panic(err)
	}
	return &corev3.Node{
		Id:       kind + "~" + ip + "~" + pod + "." + ns + "~" + ns + ".svc.cluster.local",
		Cluster:  app + "." + ns,
		Metadata: md,
	}
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func spiffe(ns, sa string) *accesslogv3.TLSProperties_CertificateProperties {
	return &accesslogv3.TLSProperties_CertificateProperties{
		SubjectAltName: []*accesslogv3.TLSProperties_CertificateProperties_SubjectAltName{
			{San: &accesslogv3.TLSProperties_CertificateProperties_SubjectAltName_Uri{Uri: "spiffe://cluster.local/ns/" + ns + "/sa/" + sa}},
		},
	}
}

func mtls(peerNS, peerSA, localNS, localSA string) *accesslogv3.TLSProperties {
	return &accesslogv3.TLSProperties{
		TlsVersion:                 accesslogv3.TLSProperties_TLSv1_3,
		PeerCertificateProperties:  spiffe(peerNS, peerSA),
		LocalCertificateProperties: spiffe(localNS, localSA),
	}
}

// peerStruct is Istio ≥1.24's upstream_peer/downstream_peer filter state.
func peerStruct(workload, ns, svc, rev string) *anypb.Any {
	s, err := structpb.NewStruct(map[string]any{
		"type": "deployment", "workload": workload, "name": workload + "-abc12",
		"namespace": ns, "cluster": "Kubernetes", "service": svc, "revision": rev,
		"app": svc, "version": rev,
	})
	if err != nil {
		panic(err)
	}
	b, _ := proto.Marshal(s)
	return &anypb.Any{TypeUrl: typeStruct, Value: b}
}

type httpOpt func(*accesslogv3.HTTPAccessLogEntry)

func httpEntry(opts ...httpOpt) *accesslogv3.HTTPAccessLogEntry {
	e := &accesslogv3.HTTPAccessLogEntry{
		ProtocolVersion: accesslogv3.HTTPAccessLogEntry_HTTP11,
		CommonProperties: &accesslogv3.AccessLogCommon{
			StartTime:                  timestamppb.New(t0),
			TimeToLastDownstreamTxByte: durationpb.New(25 * time.Millisecond),
			DownstreamRemoteAddress:    sockAddr("10.0.0.10", 40000),
			DownstreamLocalAddress:     sockAddr("10.96.0.20", 9080),
			UpstreamRemoteAddress:      sockAddr("10.0.0.20", 9080),
			UpstreamLocalAddress:       sockAddr("10.0.0.10", 50000),
			UpstreamCluster:            "outbound|9080||reviews.default.svc.cluster.local",
		},
		Request: &accesslogv3.HTTPRequestProperties{
			RequestMethod:       corev3.RequestMethod_GET,
			Authority:           "reviews:9080",
			Path:                "/reviews/0?x=1",
			RequestId:           "req-1",
			RequestHeadersBytes: 100,
			RequestBodyBytes:    20,
		},
		Response: &accesslogv3.HTTPResponseProperties{
			ResponseCode:         wrapperspb.UInt32(200),
			ResponseHeadersBytes: 150,
			ResponseBodyBytes:    300,
		},
	}
	for _, o := range opts {
		o(e)
	}
	return e
}

func httpMsg(node *corev3.Node, entries ...*accesslogv3.HTTPAccessLogEntry) *alsv3.StreamAccessLogsMessage {
	m := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{
		HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries},
	}}
	if node != nil {
		m.Identifier = &alsv3.StreamAccessLogsMessage_Identifier{Node: node, LogName: "als"}
	}
	return m
}

func tcpMsg(node *corev3.Node, entries ...*accesslogv3.TCPAccessLogEntry) *alsv3.StreamAccessLogsMessage {
	m := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_TcpLogs{
		TcpLogs: &alsv3.StreamAccessLogsMessage_TCPAccessLogEntries{LogEntry: entries},
	}}
	if node != nil {
		m.Identifier = &alsv3.StreamAccessLogsMessage_Identifier{Node: node, LogName: "als"}
	}
	return m
}

// flatNode builds a Wasm.Common.FlatNode buffer front to back (every
// uoffset points forward, the vtable sits before its table), which is a
// valid FlatBuffer layout even if flatc lays it out differently.
type fbField struct {
	slot   int
	str    string
	labels [][2]string
	strs   []string
}

func flatNode(fields ...fbField) []byte {
	var b []byte
	u32 := func(v uint32) { b = binary.LittleEndian.AppendUint32(b, v) }
	u16 := func(v uint16) { b = binary.LittleEndian.AppendUint16(b, v) }
	patch := func(at, target int) { binary.LittleEndian.PutUint32(b[at:], uint32(target-at)) }

	// table writes a table whose fields are all offsets; it returns the
	// position of each field's slot so the caller can patch it.
	table := func(nslots int, present []int) (int, map[int]int) {
		vt := len(b)
		u16(uint16(4 + 2*nslots))
		u16(uint16(4 + 4*len(present)))
		offs := map[int]int{}
		for i := 0; i < nslots; i++ {
			idx := -1
			for j, s := range present {
				if s == i {
					idx = j
				}
			}
			if idx < 0 {
				u16(0)
			} else {
				u16(uint16(4 + 4*idx))
			}
		}
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		tab := len(b)
		u32(uint32(int32(tab - vt)))
		for j, s := range present {
			offs[s] = tab + 4 + 4*j
			u32(0)
		}
		return tab, offs
	}
	str := func(s string) int {
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		p := len(b)
		u32(uint32(len(s)))
		b = append(b, s...)
		b = append(b, 0)
		return p
	}

	u32(0) // root offset, patched below
	var present []int
	for _, f := range fields {
		present = append(present, f.slot)
	}
	tab, offs := table(12, present)
	patch(0, tab)
	for _, f := range fields {
		switch {
		case f.labels != nil:
			for len(b)%4 != 0 {
				b = append(b, 0)
			}
			vec := len(b)
			patch(offs[f.slot], vec)
			u32(uint32(len(f.labels)))
			elems := len(b)
			for range f.labels {
				u32(0)
			}
			for i, kv := range f.labels {
				kt, koffs := table(2, []int{0, 1})
				patch(elems+4*i, kt)
				patch(koffs[0], str(kv[0]))
				patch(koffs[1], str(kv[1]))
			}
		case f.strs != nil:
			for len(b)%4 != 0 {
				b = append(b, 0)
			}
			vec := len(b)
			patch(offs[f.slot], vec)
			u32(uint32(len(f.strs)))
			elems := len(b)
			for range f.strs {
				u32(0)
			}
			for i, s := range f.strs {
				patch(elems+4*i, str(s))
			}
		default:
			patch(offs[f.slot], str(f.str))
		}
	}
	return b
}

func wasmPeer(buf []byte) *anypb.Any {
	v, _ := proto.Marshal(wrapperspb.Bytes(buf))
	return &anypb.Any{TypeUrl: typeBytesValue, Value: v}
}
