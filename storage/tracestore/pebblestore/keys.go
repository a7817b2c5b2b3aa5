package pebblestore

import (
	"encoding/binary"
	"errors"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Key layout. Everything a span produces lives under the prefix of the time
// bucket its start time falls in, so retention drops a bucket with one
// DeleteRange and one compaction of that range.
//
//	b|bkt(4)|T|trace(16)|0|reshash(8)                       resource+scope (ptrace proto, no spans)
//	b|bkt(4)|T|trace(16)|1|span(8)|kind(1)|start(8)         span value (see encodeSpanValue)
//	b|bkt(4)|I|idx(1)|fields|start(8)|trace|span|kind       time-ordered index, value uvarint duration
//	b|bkt(4)|D|lp(svc)|lp(op)|dur(8)|start(8)|trace|span|kind   duration index (op "" = any)
//	x|epoch(4)|trace(16)|bkt(4)   the buckets holding a trace (epoch = bkt/epochBuckets)
//	m|v|svc                  -> bkt(4) of last sighting (service list)
//	m|o|lp(svc)|kind(1)|op   -> bkt(4) (operations)
//	m|r|lp(svc)|remote       -> bkt(4) (remote services)
//	m|k|lp(key)|value        -> bkt(4) (autocomplete values)
//
// lp(s) is a uvarint length followed by s: fields are compared only for
// equality of whole prefixes, so the length prefix keeps "ab"+"c" apart from
// "a"+"bc" without escaping.
const (
	pfxBucket = 'b'
	pfxMeta   = 'm'
	pfxLocate = 'x'

	// epochBuckets buckets share one locator epoch: GetTrace seeks once
	// per epoch (3 for 72h of 1h buckets) instead of once per bucket, and
	// an epoch's locators are dropped with its last bucket.
	epochBuckets = 24

	secTrace    = 'T'
	secIndex    = 'I'
	secDuration = 'D'

	recResource = 0
	recSpan     = 1

	idxAll     = 'a' // no fields
	idxService = 'v' // lp(svc)
	idxOp      = 'o' // lp(svc) lp(op)
	idxTag     = 't' // lp(svc) lp(key) lp(value)

	metaService = 'v'
	metaOp      = 'o'
	metaRemote  = 'r'
	metaTag     = 'k'

	// suffixLen is start(8)+trace(16)+span(8)+kind(1), the tail of every
	// index key.
	suffixLen = 8 + 16 + 8 + 1
)

func appendLP(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

func bucketPrefix(b []byte, bkt uint32) []byte {
	return appendU32(append(b, pfxBucket), bkt)
}

func tracePrefix(b []byte, bkt uint32, id pcommon.TraceID) []byte {
	b = append(bucketPrefix(b, bkt), secTrace)
	return append(b, id[:]...)
}

func resourceKey(b []byte, bkt uint32, id pcommon.TraceID, hash uint64) []byte {
	return appendU64(append(tracePrefix(b, bkt, id), recResource), hash)
}

func spanKey(b []byte, bkt uint32, id pcommon.TraceID, sid pcommon.SpanID, kind ptrace.SpanKind, start uint64) []byte {
	b = append(tracePrefix(b, bkt, id), recSpan)
	b = append(b, sid[:]...)
	b = append(b, byte(kind))
	return appendU64(b, start)
}

// appendSuffix appends the tail shared by index keys.
func appendSuffix(b []byte, start uint64, id pcommon.TraceID, sid pcommon.SpanID, kind ptrace.SpanKind) []byte {
	b = appendU64(b, start)
	b = append(b, id[:]...)
	b = append(b, sid[:]...)
	return append(b, byte(kind))
}

type suffix struct {
	start uint64
	trace pcommon.TraceID
	span  pcommon.SpanID
	kind  ptrace.SpanKind
}

func parseSuffix(k []byte) (suffix, bool) {
	if len(k) < suffixLen {
		return suffix{}, false
	}
	k = k[len(k)-suffixLen:]
	var s suffix
	s.start = binary.BigEndian.Uint64(k)
	copy(s.trace[:], k[8:24])
	copy(s.span[:], k[24:32])
	s.kind = ptrace.SpanKind(k[32])
	return s, true
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// Span value: version(1) reshash(8) parent(8) lp(service) proto.
// The header lets dependency linking read parent and service without
// decoding the protobuf.
const spanValueVersion = 1

var errBadValue = errors.New("corrupt span record")

type spanHeader struct {
	resHash uint64
	parent  pcommon.SpanID
	service string
	proto   []byte
}

func appendSpanValue(b []byte, resHash uint64, parent pcommon.SpanID, svc string, proto []byte) []byte {
	b = append(b, spanValueVersion)
	b = appendU64(b, resHash)
	b = append(b, parent[:]...)
	b = appendLP(b, svc)
	return append(b, proto...)
}

func parseSpanValue(v []byte) (spanHeader, error) {
	var h spanHeader
	if len(v) < 17 || v[0] != spanValueVersion {
		return h, errBadValue
	}
	h.resHash = binary.BigEndian.Uint64(v[1:9])
	copy(h.parent[:], v[9:17])
	v = v[17:]
	n, w := binary.Uvarint(v)
	if w <= 0 || uint64(len(v)-w) < n {
		return h, errBadValue
	}
	h.service = string(v[w : w+int(n)])
	h.proto = v[w+int(n):]
	return h, nil
}

func locatePrefix(b []byte, epoch uint32, id pcommon.TraceID) []byte {
	b = appendU32(append(b, pfxLocate), epoch)
	return append(b, id[:]...)
}

func locateKey(b []byte, bkt uint32, id pcommon.TraceID) []byte {
	return appendU32(locatePrefix(b, bkt/epochBuckets, id), bkt)
}
