package pebblestore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// Key layout (format 2). Everything a span produces lives under the prefix
// of the time bucket its start time falls in, so retention drops a bucket
// with one DeleteRange and one compaction of that range. One WriteTraces
// call gets a sequence number seq; within a bucket it writes:
//
//	b|bkt(4)|T|trace(16)|seq(8)   chunk: every span of the trace in the batch (chunk value)
//	b|bkt(4)|B|seq(8)             trace table: traceEntryLen bytes per trace of the batch
//	b|bkt(4)|P|term|seq(8)        posting list: ordinals into the trace table
//	b|bkt(4)|S|seq(8)             latest(8) start of a trace in this or an older batch of the bucket
//	x|epoch(4)|trace(16)|bkt(4)   the buckets holding a trace (epoch = bkt/epochBuckets)
//	m|v|svc                  -> bkt(4) of last sighting (service list)
//	m|o|lp(svc)|kind(1)|op   -> bkt(4) (operations)
//	m|r|lp(svc)|remote       -> bkt(4) (remote services)
//	m|k|lp(key)|value        -> bkt(4) (autocomplete values)
//	f                        -> format version (formatVersion)
//	f|s                      -> seq(8) of the first batch written with an S key
//
// A term is termService lp(svc), termOp lp(svc) lp(op) or termTag lp(key)
// lp(value). Index keys therefore carry no trace id: a posting is a varint
// ordinal of a few bits instead of a 16-byte random id repeated in every
// index key, which is what made format 1 cost ~900 bytes and ~25 memtable
// inserts per span.
//
// lp(s) is a uvarint length followed by s: fields are compared only for
// equality of whole prefixes, so the length prefix keeps "ab"+"c" apart from
// "a"+"bc" without escaping.
const (
	pfxBucket = 'b'
	pfxMeta   = 'm'
	pfxLocate = 'x'
	pfxFormat = 'f'

	// formatVersion is the on-disk layout this code reads and writes.
	// Format 1 (one key per span and ~20 index keys per span) had no
	// version key.
	formatVersion = 2

	// epochBuckets buckets share one locator epoch: GetTrace seeks once
	// per epoch (3 for 72h of 1h buckets) instead of once per bucket, and
	// an epoch's locators are dropped with its last bucket.
	epochBuckets = 24

	secChunk   = 'T'
	secTable   = 'B'
	secPosting = 'P'
	secStart   = 'S'

	termService = 'v'
	termOp      = 'o'
	termTag     = 't'

	metaService = 'v'
	metaOp      = 'o'
	metaRemote  = 'r'
	metaTag     = 'k'

	// traceEntryLen is trace(16) minStart(8) maxStart(8) maxDuration(8):
	// fixed width so a search reads the entries it needs without decoding
	// the others.
	traceEntryLen = 16 + 8 + 8 + 8

	chunkVersion = 2
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

// chunkPrefix is the prefix of every chunk of trace id in bucket bkt; the
// chunks sort by seq, that is in write order.
func chunkPrefix(b []byte, bkt uint32, id pcommon.TraceID) []byte {
	b = append(bucketPrefix(b, bkt), secChunk)
	return append(b, id[:]...)
}

func chunkKey(b []byte, bkt uint32, id pcommon.TraceID, seq uint64) []byte {
	return appendU64(chunkPrefix(b, bkt, id), seq)
}

// startKey holds the latest start of a trace in this batch or an older one
// of bucket bkt (a running maximum): a search reading a bucket newest batch
// first stops once no older batch can hold a trace that starts later than
// those it has (see searcher.newestFirst).
func startKey(b []byte, bkt uint32, seq uint64) []byte {
	return appendU64(append(bucketPrefix(b, bkt), secStart), seq)
}

// startBound decodes a start key's value.
func startBound(v []byte) uint64 {
	if len(v) != 8 {
		return ^uint64(0) // unreadable: no bound
	}
	return binary.BigEndian.Uint64(v)
}

// startKeysFrom marks the first batch written with a start key: buckets
// with older batches (written before start keys existed) are searched
// whole.
var startKeysFrom = []byte{pfxFormat, 's'}

func tableKey(b []byte, bkt uint32, seq uint64) []byte {
	return appendU64(append(bucketPrefix(b, bkt), secTable), seq)
}

// postingPrefix is the prefix of the posting lists of term (kind byte and
// length-prefixed fields) in bucket bkt.
func postingPrefix(b []byte, bkt uint32, term []byte) []byte {
	b = append(bucketPrefix(b, bkt), secPosting)
	return append(b, term...)
}

// termHasDuration says whether a term's postings carry the longest
// duration of the spans that produced the term (service and operation
// terms do, so that duration searches prune without reading the table).
func termHasDuration(kind byte) bool { return kind == termService || kind == termOp }

// traceEntry is one row of a batch's trace table.
type traceEntry struct {
	id                 pcommon.TraceID
	minStart, maxStart uint64
	maxDur             uint64
}

func appendTraceEntry(b []byte, e *traceEntry) []byte {
	b = append(b, e.id[:]...)
	b = appendU64(b, e.minStart)
	b = appendU64(b, e.maxStart)
	return appendU64(b, e.maxDur)
}

func traceEntryAt(table []byte, ord uint64) (traceEntry, bool) {
	var e traceEntry
	off := ord * traceEntryLen
	if off+traceEntryLen > uint64(len(table)) {
		return e, false
	}
	r := table[off : off+traceEntryLen]
	copy(e.id[:], r[:16])
	e.minStart = binary.BigEndian.Uint64(r[16:])
	e.maxStart = binary.BigEndian.Uint64(r[24:])
	e.maxDur = binary.BigEndian.Uint64(r[32:])
	return e, true
}

// posting is one entry of a posting list: the trace's ordinal in the
// batch's table, and (service and operation terms) the longest duration of
// the spans behind it, in microseconds rounded up.
type posting struct {
	ord   uint32
	durUS uint64
}

// appendPostings encodes sorted, deduplicated postings as uvarint ordinal
// deltas, each followed by the duration when withDur.
func appendPostings(b []byte, ps []posting, withDur bool) []byte {
	prev := uint32(0)
	for i, p := range ps {
		d := p.ord - prev
		if i == 0 {
			d = p.ord
		}
		b = binary.AppendUvarint(b, uint64(d))
		if withDur {
			b = binary.AppendUvarint(b, p.durUS)
		}
		prev = p.ord
	}
	return b
}

var errBadValue = errors.New("corrupt record")

// Chunk value: version(1) uvarint(nsvc) lp(svc)... uvarint(nspans)
// [span(8) parent(8) kind(1) start(8) uvarint(svc index)]... proto.
// The header lets dependency linking read the span graph without decoding
// the protobuf (ptrace.Traces of the trace's resources, scopes and spans).
type linkRec struct {
	span, parent [8]byte
	kind         byte
	start        uint64
	svc          int
}

func appendChunk(b []byte, svcs []string, links []linkRec, proto []byte) []byte {
	b = append(b, chunkVersion)
	b = binary.AppendUvarint(b, uint64(len(svcs)))
	for _, s := range svcs {
		b = appendLP(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(links)))
	for _, l := range links {
		b = append(b, l.span[:]...)
		b = append(b, l.parent[:]...)
		b = append(b, l.kind)
		b = appendU64(b, l.start)
		b = binary.AppendUvarint(b, uint64(l.svc))
	}
	return append(b, proto...)
}

// parseChunk splits a chunk value into its header and protobuf; fn (may
// be nil) gets each header row with its service name.
func parseChunk(v []byte, fn func(l linkRec, svc string)) (proto []byte, err error) {
	if len(v) == 0 || v[0] != chunkVersion {
		return nil, fmt.Errorf("chunk version: %w", errBadValue)
	}
	v = v[1:]
	uv := func() (uint64, bool) {
		x, w := binary.Uvarint(v)
		if w <= 0 {
			return 0, false
		}
		v = v[w:]
		return x, true
	}
	nsvc, ok := uv()
	if !ok || nsvc > uint64(len(v)) {
		return nil, fmt.Errorf("chunk services: %w", errBadValue)
	}
	svcs := make([]string, 0, nsvc)
	for i := uint64(0); i < nsvc; i++ {
		n, ok := uv()
		if !ok || n > uint64(len(v)) {
			return nil, fmt.Errorf("chunk service: %w", errBadValue)
		}
		if fn != nil {
			svcs = append(svcs, string(v[:n]))
		}
		v = v[n:]
	}
	nspans, ok := uv()
	if !ok || nspans > uint64(len(v))/26 {
		return nil, fmt.Errorf("chunk span count: %w", errBadValue)
	}
	for i := uint64(0); i < nspans; i++ {
		if len(v) < 26 {
			return nil, fmt.Errorf("chunk span row: %w", errBadValue)
		}
		var l linkRec
		copy(l.span[:], v[:8])
		copy(l.parent[:], v[8:16])
		l.kind = v[16]
		l.start = binary.BigEndian.Uint64(v[17:25])
		v = v[25:]
		si, ok := uv()
		if !ok || (fn != nil && si >= uint64(len(svcs))) {
			return nil, fmt.Errorf("chunk span service: %w", errBadValue)
		}
		if fn != nil {
			l.svc = int(si)
			fn(l, svcs[si])
		}
	}
	return v, nil
}

// decodePostings calls fn for every posting of v.
func decodePostings(v []byte, withDur bool, fn func(p posting)) error {
	ord := uint64(0)
	for i := 0; len(v) > 0; i++ {
		d, w := binary.Uvarint(v)
		if w <= 0 {
			return fmt.Errorf("posting list: %w", errBadValue)
		}
		v = v[w:]
		if i == 0 {
			ord = d
		} else {
			ord += d
		}
		p := posting{ord: uint32(ord)}
		if withDur {
			p.durUS, w = binary.Uvarint(v)
			if w <= 0 {
				return fmt.Errorf("posting list duration: %w", errBadValue)
			}
			v = v[w:]
		}
		fn(p)
	}
	return nil
}

// durUS converts a duration in nanoseconds to microseconds rounded up, so
// that a posting's duration is never below the span's: the index must
// return a superset of the matches.
func durUS(ns uint64) uint64 { return (ns + 999) / 1000 }

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

func locatePrefix(b []byte, epoch uint32, id pcommon.TraceID) []byte {
	b = appendU32(append(b, pfxLocate), epoch)
	return append(b, id[:]...)
}

func locateKey(b []byte, bkt uint32, id pcommon.TraceID) []byte {
	return appendU32(locatePrefix(b, bkt/epochBuckets, id), bkt)
}
