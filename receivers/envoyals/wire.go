package envoyals

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshlens/meshlens/model"
)

// The receiver decodes ALS messages straight from the wire: the generic
// protobuf decoder builds a tree of ~40 objects per HTTP entry (maps,
// wrappers, addresses) only for the converter to read a few fields. This
// decoder reads those fields into a flat entry, skips the rest, and interns
// the repeated strings (addresses, clusters, authorities) per stream.

// fsValue is one filter state object: the Any's type URL and value.
type fsValue struct {
	typeURL string
	value   []byte
}

// entry is the part of an HTTP or TCP access log entry meshlens reads.
type entry struct {
	hasStart                bool
	startSec                int64
	startNanos              int32
	hasTTLDTx, hasDur       bool
	ttldtx, dur             durationParts
	downRemoteIP            string
	downLocalIP             string
	upRemoteIP              string
	upRemotePort            uint32
	upstreamCluster         string
	flags                   uint32
	tls                     model.TLSMode
	peerPrincipal, localPri string
	upPeer, downPeer        fsValue
	upPeerPri, downPeerPri  int // 2: plain key, 1: wasm key, 0: none
	intermediate            bool
	logType                 int32

	// HTTP
	protoVersion                 int32
	method                       int32
	authority, path, requestID   string
	reqBytes, respBytes          uint64
	contentType                  string
	respCode                     uint32
	grpcStatus                   string
	grpcStatusTrailer, grpcInHdr bool

	// TCP
	received, sent uint64
}

type durationParts struct {
	sec   int64
	nanos int32
}

var errTruncated = errors.New("truncated or invalid protobuf field")

// interner returns one string per distinct byte sequence seen on a stream,
// so repeated values (IPs, clusters, authorities) cost no allocation. It
// is bounded and starts over when full.
type interner struct {
	m   map[string]string
	max int
}

func (in *interner) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > 256 {
		return string(b)
	}
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(in.m) >= in.max {
		clear(in.m)
	}
	in.m[s] = s
	return s
}

// field iterates over the fields of a message.
type fieldIter struct {
	b   []byte
	num protowire.Number
	typ protowire.Type
	err error
}

// next advances to the next field; false at the end or on error.
func (it *fieldIter) next() bool {
	if it.err != nil || len(it.b) == 0 {
		return false
	}
	num, typ, n := protowire.ConsumeTag(it.b)
	if n < 0 {
		it.err = errTruncated
		return false
	}
	it.b = it.b[n:]
	it.num, it.typ = num, typ
	return true
}

// nextField advances to the next field whose wire type is what the
// message declares: fields in varints (a bit per field number) are
// varints, every other field meshlens reads is length-delimited. A field
// with another wire type is skipped, as the protobuf runtime keeps it as
// an unknown field instead of reading it.
func (it *fieldIter) nextField(varints uint64) bool {
	for it.next() {
		want := protowire.BytesType
		if it.num < 64 && varints&(1<<uint(it.num)) != 0 {
			want = protowire.VarintType
		}
		if it.typ == want {
			return true
		}
		it.skip()
	}
	return false
}

// vt builds a varint field mask.
func vt(nums ...protowire.Number) uint64 {
	var m uint64
	for _, n := range nums {
		m |= 1 << uint(n)
	}
	return m
}

// Varint field masks of the messages wire.go reads.
var (
	varints1       = vt(1)
	varints1_11_12 = vt(1, 11, 12)
	varints1_2     = vt(1, 2)
	varints2       = vt(2)
	varints2_3     = vt(2, 3)
	varints27_33   = vt(27, 33)
	varints3       = vt(3)
)

// flagVarints: every ResponseFlags field is a bool except 13
// (unauthorized_details, a message).
var flagVarints = vt(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28)

func (it *fieldIter) bytes() []byte {
	if it.typ != protowire.BytesType {
		it.skip()
		return nil
	}
	v, n := protowire.ConsumeBytes(it.b)
	if n < 0 {
		it.err = errTruncated
		it.b = nil
		return nil
	}
	it.b = it.b[n:]
	return v
}

func (it *fieldIter) varint() uint64 {
	if it.typ != protowire.VarintType {
		it.skip()
		return 0
	}
	v, n := protowire.ConsumeVarint(it.b)
	if n < 0 {
		it.err = errTruncated
		it.b = nil
		return 0
	}
	it.b = it.b[n:]
	return v
}

func (it *fieldIter) skip() {
	n := protowire.ConsumeFieldValue(it.num, it.typ, it.b)
	if n < 0 {
		it.err = errTruncated
		it.b = nil
		return
	}
	it.b = it.b[n:]
}

func wireErr(what string, err error) error {
	return fmt.Errorf("%s: %w", what, err)
}

// message is a StreamAccessLogsMessage split into its parts.
type message struct {
	identifier []byte
	http, tcp  [][]byte // raw entries
}

// splitMessage finds the identifier and the raw entries of a message. The
// entry slices alias b.
func splitMessage(b []byte, m *message) error {
	m.identifier = nil
	m.http, m.tcp = m.http[:0], m.tcp[:0]
	it := fieldIter{b: b}
	for it.nextField(0) {
		switch it.num {
		case 1:
			m.identifier = it.bytes()
		case 2, 3:
			isHTTP := it.num == 2
			logs := it.bytes()
			in := fieldIter{b: logs}
			for in.nextField(0) {
				if in.num != 1 {
					in.skip()
					continue
				}
				e := in.bytes()
				if in.err != nil {
					break
				}
				if isHTTP {
					m.http = append(m.http, e)
				} else {
					m.tcp = append(m.tcp, e)
				}
			}
			if in.err != nil {
				return wireErr("log_entries", in.err)
			}
		default:
			it.skip()
		}
	}
	if it.err != nil {
		return wireErr("StreamAccessLogsMessage", it.err)
	}
	return nil
}

// decodeHTTP reads an HTTPAccessLogEntry.
func decodeHTTP(b []byte, e *entry, in *interner) error {
	*e = entry{}
	it := fieldIter{b: b}
	for it.nextField(varints2) {
		switch it.num {
		case 1:
			if err := decodeCommon(it.bytes(), e, in); err != nil {
				return err
			}
		case 2:
			e.protoVersion = int32(it.varint())
		case 3:
			if err := decodeRequest(it.bytes(), e, in); err != nil {
				return err
			}
		case 4:
			if err := decodeResponse(it.bytes(), e, in); err != nil {
				return err
			}
		default:
			it.skip()
		}
	}
	if it.err != nil {
		return wireErr("HTTPAccessLogEntry", it.err)
	}
	return nil
}

// decodeTCP reads a TCPAccessLogEntry.
func decodeTCP(b []byte, e *entry, in *interner) error {
	*e = entry{}
	it := fieldIter{b: b}
	for it.nextField(0) {
		switch it.num {
		case 1:
			if err := decodeCommon(it.bytes(), e, in); err != nil {
				return err
			}
		case 2:
			cp := fieldIter{b: it.bytes()}
			for cp.nextField(varints1_2) {
				switch cp.num {
				case 1:
					e.received = cp.varint()
				case 2:
					e.sent = cp.varint()
				default:
					cp.skip()
				}
			}
			if cp.err != nil {
				return wireErr("connection_properties", cp.err)
			}
		default:
			it.skip()
		}
	}
	if it.err != nil {
		return wireErr("TCPAccessLogEntry", it.err)
	}
	return nil
}

func decodeCommon(b []byte, e *entry, in *interner) error {
	it := fieldIter{b: b}
	for it.nextField(varints27_33) {
		switch it.num {
		case 2:
			e.downRemoteIP, _ = decodeAddress(it.bytes(), in, &it)
		case 3:
			e.downLocalIP, _ = decodeAddress(it.bytes(), in, &it)
		case 4:
			if err := decodeTLS(it.bytes(), e, in); err != nil {
				return err
			}
		case 5:
			e.hasStart = true
			decodeTime(it.bytes(), &e.startSec, &e.startNanos, &it)
		case 12:
			e.hasTTLDTx = true
			decodeTime(it.bytes(), &e.ttldtx.sec, &e.ttldtx.nanos, &it)
		case 23:
			e.hasDur = true
			decodeTime(it.bytes(), &e.dur.sec, &e.dur.nanos, &it)
		case 13:
			e.upRemoteIP, e.upRemotePort = decodeAddress(it.bytes(), in, &it)
		case 15:
			e.upstreamCluster = in.str(it.bytes())
		case 16:
			e.flags = decodeFlags(it.bytes(), &it)
		case 21:
			decodeFilterState(it.bytes(), e, &it)
		case 27:
			e.intermediate = it.varint() != 0
		case 33:
			e.logType = int32(it.varint())
		default:
			it.skip()
		}
		if it.err != nil {
			break
		}
	}
	if it.err != nil {
		return wireErr("common_properties", it.err)
	}
	return nil
}

// decodeTime reads a Timestamp or Duration (same layout). Errors go to
// parent so one error path covers every nested message.
func decodeTime(b []byte, sec *int64, nanos *int32, parent *fieldIter) {
	it := fieldIter{b: b}
	for it.nextField(varints1_2) {
		switch it.num {
		case 1:
			*sec = int64(it.varint())
		case 2:
			*nanos = int32(it.varint())
		default:
			it.skip()
		}
	}
	if it.err != nil && parent.err == nil {
		parent.err = it.err
	}
}

// decodeAddress returns a SocketAddress's address and port.
func decodeAddress(b []byte, in *interner, parent *fieldIter) (string, uint32) {
	var ip string
	var port uint32
	it := fieldIter{b: b}
	for it.nextField(0) {
		if it.num != 1 {
			it.skip()
			continue
		}
		sa := fieldIter{b: it.bytes()}
		for sa.nextField(varints3) {
			switch sa.num {
			case 2:
				ip = in.str(sa.bytes())
			case 3:
				port = uint32(sa.varint())
			default:
				sa.skip()
			}
		}
		if sa.err != nil {
			it.err = sa.err
		}
	}
	if it.err != nil && parent.err == nil {
		parent.err = it.err
	}
	return ip, port
}

// flagFields maps ResponseFlags field numbers (1..28) to mask bits; field
// 13 (unauthorized_details) is a message.
func decodeFlags(b []byte, parent *fieldIter) uint32 {
	var m uint32
	it := fieldIter{b: b}
	for it.nextField(flagVarints) {
		if it.num < 1 || it.num > protowire.Number(len(flagNames)) {
			it.skip()
			continue
		}
		bit := uint32(1) << (it.num - 1)
		if it.num == 13 {
			if it.typ == protowire.BytesType {
				it.bytes()
				m |= bit
			} else {
				it.skip()
			}
			continue
		}
		if it.varint() != 0 {
			m |= bit
		} else {
			m &^= bit
		}
	}
	if it.err != nil && parent.err == nil {
		parent.err = it.err
	}
	return m
}

func decodeFilterState(b []byte, e *entry, parent *fieldIter) {
	var key, val []byte
	it := fieldIter{b: b}
	for it.nextField(0) {
		switch it.num {
		case 1:
			key = it.bytes()
		case 2:
			val = it.bytes()
		default:
			it.skip()
		}
	}
	if it.err != nil {
		if parent.err == nil {
			parent.err = it.err
		}
		return
	}
	var dst *fsValue
	var pri *int
	var p int
	switch string(key) {
	case fsUpstreamPeer:
		dst, pri, p = &e.upPeer, &e.upPeerPri, 2
	case fsWasmUpstreamPeer:
		dst, pri, p = &e.upPeer, &e.upPeerPri, 1
	case fsDownstreamPeer:
		dst, pri, p = &e.downPeer, &e.downPeerPri, 2
	case fsWasmDownstreamPeer:
		dst, pri, p = &e.downPeer, &e.downPeerPri, 1
	default:
		return
	}
	if p < *pri {
		return
	}
	var typeURL, value []byte
	a := fieldIter{b: val}
	for a.nextField(0) {
		switch a.num {
		case 1:
			typeURL = a.bytes()
		case 2:
			value = a.bytes()
		default:
			a.skip()
		}
	}
	if a.err != nil {
		if parent.err == nil {
			parent.err = a.err
		}
		return
	}
	*pri = p
	// Only the type URLs we decode matter; constants avoid an allocation.
	switch string(typeURL) {
	case typeStruct:
		dst.typeURL = typeStruct
	case typeBytesValue:
		dst.typeURL = typeBytesValue
	case typeStringValue:
		dst.typeURL = typeStringValue
	default:
		dst.typeURL = ""
	}
	dst.value = value
}

func decodeTLS(b []byte, e *entry, in *interner) error {
	var version uint64
	var other, hasLocal, peerCert bool
	it := fieldIter{b: b}
	for it.nextField(varints1) {
		switch it.num {
		case 1:
			version = it.varint()
		case 2:
			it.skip()
			other = true
		case 3:
			if len(it.bytes()) > 0 {
				other = true
			}
		case 4:
			hasLocal = true
			if p, _ := decodeCert(it.bytes(), in, &it); p != "" && e.localPri == "" {
				e.localPri = p
			}
		case 5:
			var p string
			var present bool
			p, present = decodeCert(it.bytes(), in, &it)
			if p != "" && e.peerPrincipal == "" {
				e.peerPrincipal = p
			}
			peerCert = peerCert || present
		default:
			it.skip()
		}
	}
	if it.err != nil {
		return wireErr("tls_properties", it.err)
	}
	switch {
	case peerCert:
		e.tls = model.TLSMutual
	case version != 0 || other || hasLocal:
		e.tls = model.TLSSimple
	default:
		e.tls = model.TLSNone
	}
	return nil
}

// decodeCert returns the first URI SAN and whether the certificate has any
// SAN or subject (what makes a peer certificate count as presented).
func decodeCert(b []byte, in *interner, parent *fieldIter) (string, bool) {
	var uri string
	var present bool
	it := fieldIter{b: b}
	for it.nextField(0) {
		switch it.num {
		case 1:
			present = true
			san := fieldIter{b: it.bytes()}
			for san.nextField(0) {
				if san.num == 1 {
					if u := san.bytes(); len(u) > 0 && uri == "" {
						uri = in.str(u)
					}
				} else {
					san.skip()
				}
			}
			if san.err != nil {
				it.err = san.err
			}
		case 2:
			if len(it.bytes()) > 0 {
				present = true
			}
		default:
			it.skip()
		}
	}
	if it.err != nil && parent.err == nil {
		parent.err = it.err
	}
	return uri, present
}

func decodeRequest(b []byte, e *entry, in *interner) error {
	var hdr, body uint64
	it := fieldIter{b: b}
	for it.nextField(varints1_11_12) {
		switch it.num {
		case 1:
			e.method = int32(it.varint())
		case 3:
			e.authority = in.str(it.bytes())
		case 5:
			e.path = string(it.bytes())
		case 9:
			e.requestID = string(it.bytes())
		case 11:
			hdr = it.varint()
		case 12:
			body = it.varint()
		case 13:
			k, v := decodeMapEntry(it.bytes(), &it)
			if string(k) == "content-type" {
				e.contentType = in.str(v)
			}
		default:
			it.skip()
		}
	}
	if it.err != nil {
		return wireErr("request", it.err)
	}
	e.reqBytes = hdr + body
	return nil
}

func decodeResponse(b []byte, e *entry, in *interner) error {
	var hdr, body uint64
	it := fieldIter{b: b}
	for it.nextField(varints2_3) {
		switch it.num {
		case 1:
			sec := int64(e.respCode)
			var n int32
			decodeTime(it.bytes(), &sec, &n, &it) // UInt32Value: field 1 varint
			e.respCode = uint32(sec)
		case 2:
			hdr = it.varint()
		case 3:
			body = it.varint()
		case 4, 5:
			trailer := it.num == 5
			k, v := decodeMapEntry(it.bytes(), &it)
			if string(k) == "grpc-status" {
				// Trailers win over headers (trailers-only responses put it
				// in the headers).
				if trailer || !e.grpcStatusTrailer {
					e.grpcStatus = in.str(v)
					e.grpcStatusTrailer = trailer
					e.grpcInHdr = true
				}
			}
		default:
			it.skip()
		}
	}
	if it.err != nil {
		return wireErr("response", it.err)
	}
	e.respBytes = hdr + body
	return nil
}

func decodeMapEntry(b []byte, parent *fieldIter) (k, v []byte) {
	it := fieldIter{b: b}
	for it.nextField(0) {
		switch it.num {
		case 1:
			k = it.bytes()
		case 2:
			v = it.bytes()
		default:
			it.skip()
		}
	}
	if it.err != nil && parent.err == nil {
		parent.err = it.err
	}
	return k, v
}
