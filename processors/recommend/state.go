package recommend

import (
	"strings"
	"time"

	"github.com/meshlens/meshlens/model"
)

// view says from which side the latencies of a series were observed. The
// client view is what a route timeout on the caller's sidecar actually
// cuts; the server view is the callee's own latency.
type view uint8

const (
	viewClient view = iota
	viewServer
)

// Failure classes. The first four are safe to retry for idempotent
// requests; connect failures are safe for any request because the request
// never reached the application.
const (
	clsConnect     = iota // UF, UH, UO: request not sent
	clsReset              // UR, UC, LR: connection reset mid-request
	clsUnavailable        // HTTP 503, gRPC UNAVAILABLE
	clsGateway            // HTTP 502, 504
	clsTimeout            // UT: the route or per-try timeout fired
	clsOther              // 500 and other non-retriable errors
	numClasses
)

var classNames = [numClasses]string{"connect", "reset", "unavailable", "gateway", "timeout", "other"}

// counts are the per-slot counters of a series.
type counts struct {
	total, success uint64
	cls            [numClasses]uint64
	idem, nonIdem  uint64
	urx            uint64
	utDurUs        uint64 // summed duration of UT calls: where the current timeout sits
	failDurUs      uint64 // time spent waiting on requests that failed
	latSumUs       uint64 // summed latency of successes
}

func (c *counts) add(o *counts) {
	c.total += o.total
	c.success += o.success
	for i := range c.cls {
		c.cls[i] += o.cls[i]
	}
	c.idem += o.idem
	c.nonIdem += o.nonIdem
	c.urx += o.urx
	c.utDurUs += o.utDurUs
	c.failDurUs += o.failDurUs
	c.latSumUs += o.latSumUs
}

func (c *counts) sub(o *counts) {
	c.total -= min(c.total, o.total)
	c.success -= min(c.success, o.success)
	for i := range c.cls {
		c.cls[i] -= min(c.cls[i], o.cls[i])
	}
	c.idem -= min(c.idem, o.idem)
	c.nonIdem -= min(c.nonIdem, o.nonIdem)
	c.urx -= min(c.urx, o.urx)
	c.utDurUs -= min(c.utDurUs, o.utDurUs)
	c.failDurUs -= min(c.failDurUs, o.failDurUs)
	c.latSumUs -= min(c.latSumUs, o.latSumUs)
}

func (c *counts) errors() uint64 {
	var n uint64
	for _, v := range c.cls {
		n += v
	}
	return n
}

// slot is one closed time slot of the sliding window.
type slot struct {
	idx int64
	h   sparseHist
	c   counts
}

// hour is one slot of the 7-day rate history.
type hour struct {
	idx     int64
	reqs    uint32
	peakMin uint32 // busiest minute of the hour, in requests
	errs    uint32
}

// HistoryHours is the length of the rate history: one week of hours, so
// that peaks are known per hour of day and day of week.
const HistoryHours = 7 * 24

// loadBins is the number of load bins of a capacity profile; bins grow by
// loadBinFactor so that 1 to ~2·10^6 requests per minute fit.
const (
	loadBins      = 300
	loadBinFactor = 1.05
)

// loadProfile records, for each level of load (requests per minute), the
// latency and error rate seen at that load. The knee, where latency climbs
// or errors appear, is read from it.
type loadProfile struct {
	minutes [loadBins]uint32
	latUs   [loadBins]float64 // summed per-minute mean latency
	errRate [loadBins]float64 // summed per-minute error rate
}

func loadBin(rpm uint64) int {
	if rpm <= 1 {
		return 0
	}
	b := int(logf(float64(rpm)) / logf(loadBinFactor))
	return min(b, loadBins-1)
}

func loadBinLower(b int) float64 { return powf(loadBinFactor, float64(b)) }

// series is the state of one edge or one service: the current slot, the
// closed slots of the window, their merged histogram, the hourly history
// and (for services) a load profile.
type series struct {
	cur    int64 // index of the current slot
	curH   Histogram
	curC   counts
	winH   Histogram // closed slots still in the window
	winC   counts
	ring   []slot
	minute struct { // per-minute accumulator for the rate history
		idx    int64
		reqs   uint32
		errs   uint32
		latSum uint64
		succ   uint32
	}
	hours    []hour
	profile  *loadProfile
	expected time.Duration // last x-envoy-expected-rq-timeout-ms reported
	lastSeen int64         // slot index of the last call
	first    int64         // slot index of the first call
	method   string
}

func newSeries(slots int, withProfile bool) *series {
	s := &series{ring: make([]slot, slots), cur: -1, first: -1}
	for i := range s.ring {
		s.ring[i].idx = -1
	}
	if withProfile {
		s.profile = &loadProfile{}
	}
	return s
}

// advance closes slots until idx is current: the current slot moves into
// the ring and the window aggregate, and the slot falling out of the
// window is subtracted.
func (s *series) advance(idx int64) {
	if s.cur < 0 {
		s.cur = idx
		return
	}
	if idx <= s.cur {
		return
	}
	n := int64(len(s.ring))
	// Close the current slot.
	pos := s.cur % n
	old := &s.ring[pos]
	if old.idx >= 0 {
		old.h.subFrom(&s.winH)
		s.winC.sub(&old.c)
	}
	old.idx = s.cur
	old.h.fromDense(&s.curH)
	old.c = s.curC
	s.winH.Add(&s.curH)
	s.winC.add(&s.curC)
	s.curH.Reset()
	s.curC = counts{}
	// Expire slots that are now older than the window.
	for i := range s.ring {
		sl := &s.ring[i]
		if sl.idx >= 0 && sl.idx <= idx-n {
			sl.h.subFrom(&s.winH)
			s.winC.sub(&sl.c)
			sl.idx = -1
		}
	}
	s.cur = idx
}

// closeMinute folds the per-minute accumulator into the hourly history and
// the load profile.
func (s *series) closeMinute(minIdx int64) {
	m := &s.minute
	if m.idx == minIdx {
		return
	}
	if m.reqs > 0 {
		if s.hours == nil {
			s.hours = make([]hour, HistoryHours)
			for i := range s.hours {
				s.hours[i].idx = -1
			}
		}
		hIdx := m.idx / 60
		h := &s.hours[hIdx%HistoryHours]
		if h.idx != hIdx {
			*h = hour{idx: hIdx}
		}
		h.reqs += m.reqs
		h.errs += m.errs
		h.peakMin = max(h.peakMin, m.reqs)
		if s.profile != nil && m.succ > 0 {
			b := loadBin(uint64(m.reqs))
			s.profile.minutes[b]++
			s.profile.latUs[b] += float64(m.latSum) / float64(m.succ)
			s.profile.errRate[b] += float64(m.errs) / float64(m.reqs)
		}
	}
	m.idx, m.reqs, m.errs, m.latSum, m.succ = minIdx, 0, 0, 0, 0
}

// observation is what one call contributes to a series.
type observation struct {
	dur        time.Duration
	ok         bool
	class      int
	idempotent bool
	urx, ut    bool
}

func (s *series) record(slotIdx, minIdx int64, o *observation) {
	if slotIdx > s.cur {
		s.advance(slotIdx)
	}
	if minIdx > s.minute.idx {
		s.closeMinute(minIdx)
	}
	s.lastSeen = max(s.lastSeen, slotIdx)
	if s.first < 0 || slotIdx < s.first {
		s.first = slotIdx
	}
	us := uint64(max(o.dur, 0) / time.Microsecond)
	c := &s.curC
	c.total++
	s.minute.reqs++
	if o.idempotent {
		c.idem++
	} else {
		c.nonIdem++
	}
	if o.urx {
		c.urx++
	}
	if o.ok {
		c.success++
		c.latSumUs += us
		s.curH.Record(o.dur)
		s.minute.succ++
		s.minute.latSum += us
	} else {
		c.cls[o.class]++
		c.failDurUs += us
		s.minute.errs++
		if o.ut {
			c.utDurUs += us
		}
	}
}

// classify derives the observation of a call.
func classify(c *model.Call) observation {
	o := observation{dur: c.Duration, class: -1}
	flags := c.ResponseFlags
	for flags != "" {
		var f string
		f, flags, _ = strings.Cut(flags, ",")
		switch strings.TrimSpace(f) {
		case "UT":
			o.ut = true
			o.class = clsTimeout
		case "URX":
			o.urx = true
		case "UF", "UH", "UO", "NR":
			if o.class < 0 {
				o.class = clsConnect
			}
		case "UR", "UC", "LR":
			if o.class < 0 {
				o.class = clsReset
			}
		}
	}
	o.idempotent = idempotent(c)
	if !c.IsError() {
		o.ok = true
		return o
	}
	if o.class < 0 {
		switch {
		case c.Protocol == model.ProtocolGRPC && c.GRPCStatus == 14:
			o.class = clsUnavailable
		case c.Protocol == model.ProtocolGRPC && c.GRPCStatus == 4:
			o.class = clsTimeout
		case c.StatusCode == 503:
			o.class = clsUnavailable
		case c.StatusCode == 502 || c.StatusCode == 504:
			o.class = clsGateway
		default:
			o.class = clsOther
		}
	}
	return o
}

// idempotent reports whether a request may be repeated safely: the HTTP
// methods RFC 9110 defines as idempotent, and gRPC methods whose name says
// they only read.
func idempotent(c *model.Call) bool {
	if c.Protocol == model.ProtocolGRPC {
		ep := c.Endpoint
		if i := strings.LastIndexByte(ep, '/'); i >= 0 {
			ep = ep[i+1:]
		}
		for _, p := range [...]string{"Get", "List", "Read", "Watch", "Check", "Search", "Query", "Lookup"} {
			if strings.HasPrefix(ep, p) {
				return true
			}
		}
		return false
	}
	m := c.Method
	if m == "" {
		m, _, _ = strings.Cut(c.Endpoint, ":")
	}
	switch m {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		return true
	}
	return false
}

// past returns the closed slot k ≥ 1 slots before the current one. It
// returns nil when that slot was overwritten by a later period or never
// filled (skip it), and end when k reaches before the series' first slot
// (stop: nothing older exists).
func (s *series) past(k int) (sl *slot, end bool) {
	idx := s.cur - int64(k)
	if idx < 0 {
		return nil, true
	}
	sl = &s.ring[idx%int64(len(s.ring))]
	if sl.idx != idx {
		return nil, false
	}
	return sl, false
}
