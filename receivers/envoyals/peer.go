package envoyals

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlens/meshlens/model"
)

// Filter state keys under which Istio's proxies leave what they learnt
// about the peer through metadata exchange. Istio 1.24 and later use the
// plain keys with a google.protobuf.Struct; earlier Wasm-based telemetry
// used the "wasm." keys with a FlatBuffer (Wasm.Common.FlatNode) wrapped in
// a google.protobuf.BytesValue.
const (
	fsUpstreamPeer       = "upstream_peer"
	fsDownstreamPeer     = "downstream_peer"
	fsWasmUpstreamPeer   = "wasm.upstream_peer"
	fsWasmDownstreamPeer = "wasm.downstream_peer"
)

const (
	typeStruct      = "type.googleapis.com/google.protobuf.Struct"
	typeBytesValue  = "type.googleapis.com/google.protobuf.BytesValue"
	typeStringValue = "type.googleapis.com/google.protobuf.StringValue"
)

// peerFields is the union of what the peer metadata encodings carry.
type peerFields struct {
	instance, namespace, cluster, workload string
	canonicalName, canonicalRevision       string
	app, version, identity, ip             string
	labels                                 map[string]string
}

// identity applies the service naming order to the fields.
func (f *peerFields) toIdentity(serviceLabels []string) model.Identity {
	id := model.Identity{
		Namespace: f.namespace,
		Cluster:   f.cluster,
		Workload:  f.workload,
		Instance:  f.instance,
		IP:        f.ip,
	}
	for _, k := range serviceLabels {
		var v string
		switch k {
		case labelCanonicalName:
			v = f.canonicalName
		case labelApp:
			v = f.app
		}
		if v == "" {
			v = f.labels[k]
		}
		if v != "" {
			id.Service = v
			break
		}
	}
	if id.Service == "" {
		id.Service = f.workload
	}
	id.Version = f.canonicalRevision
	if id.Version == "" {
		id.Version = f.version
	}
	if strings.HasPrefix(f.identity, "spiffe://") {
		id.Principal = f.identity
	}
	return id
}

// errNoPeer says the filter state object held nothing usable.
var errNoPeer = errors.New("peer metadata has no workload fields")

// decodePeer decodes one peer metadata filter state object in any of the
// encodings Istio has used.
func decodePeer(a *anypb.Any, serviceLabels []string) (model.Identity, error) {
	return decodePeerRaw(a.GetTypeUrl(), a.GetValue(), serviceLabels)
}

// decodePeerRaw is decodePeer on an Any's parts.
func decodePeerRaw(typeURL string, value []byte, serviceLabels []string) (model.Identity, error) {
	var f peerFields
	switch typeURL {
	case typeStruct:
		var s structpb.Struct
		if err := proto.Unmarshal(value, &s); err != nil {
			return model.Identity{}, fmt.Errorf("peer metadata Struct: %w", err)
		}
		peerFromStruct(&s, &f)
	case typeBytesValue:
		var b wrapperspb.BytesValue
		if err := proto.Unmarshal(value, &b); err != nil {
			return model.Identity{}, fmt.Errorf("peer metadata BytesValue: %w", err)
		}
		if err := peerFromFlatNode(b.GetValue(), &f); err != nil {
			return model.Identity{}, err
		}
	case typeStringValue:
		var s wrapperspb.StringValue
		if err := proto.Unmarshal(value, &s); err != nil {
			return model.Identity{}, fmt.Errorf("peer metadata StringValue: %w", err)
		}
		peerFromPairs(s.GetValue(), &f)
	default:
		return model.Identity{}, fmt.Errorf("peer metadata of unsupported type %q", typeURL)
	}
	if f.workload == "" && f.canonicalName == "" && f.app == "" && f.instance == "" && len(f.labels) == 0 {
		return model.Identity{}, errNoPeer
	}
	return f.toIdentity(serviceLabels), nil
}

// peerFromStruct reads both Struct layouts Istio produces: the lower-case
// field names of WorkloadMetadataObject ("workload", "service", ...) and the
// node-metadata layout ("WORKLOAD_NAME", "LABELS", ...).
func peerFromStruct(s *structpb.Struct, f *peerFields) {
	for k, v := range s.GetFields() {
		sv := v.GetStringValue()
		switch k {
		case "name", mdName:
			f.instance = sv
		case "namespace", mdNamespace:
			f.namespace = sv
		case "cluster", mdClusterID:
			f.cluster = sv
		case "workload", mdWorkload:
			f.workload = sv
		case "service":
			f.canonicalName = sv
		case "revision":
			f.canonicalRevision = sv
		case "app":
			f.app = sv
		case "version":
			f.version = sv
		case "identity":
			f.identity = sv
		case mdInstanceIPs:
			f.ip, _, _ = strings.Cut(sv, ",")
		case "labels", mdLabels:
			for lk, lv := range v.GetStructValue().GetFields() {
				setLabel(f, lk, lv.GetStringValue())
			}
		}
	}
}

// setLabel records a workload label, keeping the well-known ones in their
// own fields. The label map is bounded by the size of the input message.
func setLabel(f *peerFields, k, v string) {
	switch k {
	case labelCanonicalName:
		if f.canonicalName == "" {
			f.canonicalName = v
		}
	case labelCanonicalRevision:
		if f.canonicalRevision == "" {
			f.canonicalRevision = v
		}
	case labelApp:
		if f.app == "" {
			f.app = v
		}
	case labelVersion:
		if f.version == "" {
			f.version = v
		}
	default:
		if f.labels == nil {
			f.labels = make(map[string]string)
		}
		f.labels[k] = v
	}
}

// peerFromPairs reads WorkloadMetadataObject's string form:
// "type=deployment,workload=reviews-v1,name=reviews-v1-abc,namespace=default,...".
func peerFromPairs(s string, f *peerFields) {
	for kv := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			f.instance = v
		case "namespace":
			f.namespace = v
		case "cluster":
			f.cluster = v
		case "workload":
			f.workload = v
		case "service":
			f.canonicalName = v
		case "revision":
			f.canonicalRevision = v
		case "app":
			f.app = v
		case "version":
			f.version = v
		default:
			if lk, ok := strings.CutPrefix(k, "labels[]"); ok {
				setLabel(f, lk, v)
			}
		}
	}
}

// FlatBuffer decoding of Istio's Wasm.Common.FlatNode (extensions/common/
// node_info.fbs). Field slots, in schema order:
const (
	fnName = iota
	fnNamespace
	fnLabels
	fnOwner
	fnWorkloadName
	fnPlatformMetadata
	fnIstioVersion
	fnMeshID
	fnAppContainers
	fnClusterID
	fnInstanceIPs
	fnIdentity
)

// maxFlatLabels bounds the label vector we walk; a real pod has a few dozen.
const maxFlatLabels = 1024

var errFlatBounds = errors.New("flatbuffer: offset out of bounds")

// fbTable is a FlatBuffer table inside buf: its position and its vtable's.
type fbTable struct {
	buf          []byte
	pos          int
	vtPos, vtLen int
	tabLen       int
}

// u32 reads a little-endian uint32 at off, checking bounds.
func fbU32(b []byte, off int) (uint32, bool) {
	if off < 0 || off > len(b)-4 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b[off:]), true
}

func fbU16(b []byte, off int) (uint16, bool) {
	if off < 0 || off > len(b)-2 {
		return 0, false
	}
	return binary.LittleEndian.Uint16(b[off:]), true
}

// fbDeref follows the uoffset stored at off.
func fbDeref(b []byte, off int) (int, bool) {
	u, ok := fbU32(b, off)
	if !ok {
		return 0, false
	}
	t := int64(off) + int64(u)
	if t < 0 || t > int64(len(b)) {
		return 0, false
	}
	return int(t), true
}

func fbOpenTable(b []byte, pos int) (fbTable, error) {
	so, ok := fbU32(b, pos)
	if !ok {
		return fbTable{}, errFlatBounds
	}
	vt := int64(pos) - int64(int32(so))
	if vt < 0 || vt > int64(len(b))-4 {
		return fbTable{}, errFlatBounds
	}
	t := fbTable{buf: b, pos: pos, vtPos: int(vt)}
	vl, _ := fbU16(b, t.vtPos)
	tl, _ := fbU16(b, t.vtPos+2)
	t.vtLen, t.tabLen = int(vl), int(tl)
	if t.vtLen < 4 || t.vtPos+t.vtLen > len(b) || t.tabLen < 4 || pos+t.tabLen > len(b) {
		return fbTable{}, errors.New("flatbuffer: bad vtable")
	}
	return t, nil
}

// field returns the absolute position of field slot i, or 0 when absent.
func (t fbTable) field(i int) (int, error) {
	slot := 4 + 2*i
	if slot+2 > t.vtLen {
		return 0, nil
	}
	o, _ := fbU16(t.buf, t.vtPos+slot)
	if o == 0 {
		return 0, nil
	}
	if int(o)+4 > t.tabLen {
		return 0, errFlatBounds
	}
	return t.pos + int(o), nil
}

// str reads string field i ("" when absent).
func (t fbTable) str(i int) (string, error) {
	p, err := t.field(i)
	if err != nil || p == 0 {
		return "", err
	}
	return fbString(t.buf, p)
}

func fbString(b []byte, p int) (string, error) {
	s, ok := fbDeref(b, p)
	if !ok {
		return "", errFlatBounds
	}
	n, ok := fbU32(b, s)
	if !ok || int64(n) > int64(len(b)-s-4) {
		return "", errFlatBounds
	}
	return string(b[s+4 : s+4+int(n)]), nil
}

// vector returns the position of the first element and the length of
// vector field i (0, 0 when absent).
func (t fbTable) vector(i int) (int, int, error) {
	p, err := t.field(i)
	if err != nil || p == 0 {
		return 0, 0, err
	}
	v, ok := fbDeref(t.buf, p)
	if !ok {
		return 0, 0, errFlatBounds
	}
	n, ok := fbU32(t.buf, v)
	if !ok || int64(n)*4 > int64(len(t.buf)-v-4) {
		return 0, 0, errFlatBounds
	}
	return v + 4, int(n), nil
}

// peerFromFlatNode decodes a Wasm.Common.FlatNode buffer.
func peerFromFlatNode(b []byte, f *peerFields) error {
	root, ok := fbDeref(b, 0)
	if !ok {
		return errFlatBounds
	}
	t, err := fbOpenTable(b, root)
	if err != nil {
		return err
	}
	for _, sf := range []struct {
		slot int
		dst  *string
	}{
		{fnName, &f.instance}, {fnNamespace, &f.namespace}, {fnWorkloadName, &f.workload},
		{fnClusterID, &f.cluster}, {fnIdentity, &f.identity},
	} {
		if *sf.dst, err = t.str(sf.slot); err != nil {
			return fmt.Errorf("flatbuffer field %d: %w", sf.slot, err)
		}
	}
	first, n, err := t.vector(fnLabels)
	if err != nil {
		return fmt.Errorf("flatbuffer labels: %w", err)
	}
	if n > maxFlatLabels {
		return fmt.Errorf("flatbuffer: %d labels, more than %d", n, maxFlatLabels)
	}
	for i := 0; i < n; i++ {
		ep, ok := fbDeref(b, first+4*i)
		if !ok {
			return errFlatBounds
		}
		kv, err := fbOpenTable(b, ep)
		if err != nil {
			return fmt.Errorf("flatbuffer label %d: %w", i, err)
		}
		k, err := kv.str(0)
		if err != nil {
			return fmt.Errorf("flatbuffer label %d key: %w", i, err)
		}
		v, err := kv.str(1)
		if err != nil {
			return fmt.Errorf("flatbuffer label %d value: %w", i, err)
		}
		setLabel(f, k, v)
	}
	first, n, err = t.vector(fnInstanceIPs)
	if err != nil {
		return fmt.Errorf("flatbuffer instance_ips: %w", err)
	}
	if n > 0 {
		if f.ip, err = fbString(b, first); err != nil {
			return fmt.Errorf("flatbuffer instance_ips: %w", err)
		}
	}
	return nil
}
