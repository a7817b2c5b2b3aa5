package tenancy

import (
	"strings"
	"sync"
	"time"

	"github.com/meshlens/meshlens/storage/tracestore"
)

// Probe cache bounds. A probe that finds nothing is the expensive one (the
// backend scans the service's traces in its lookback for the tenant's tag),
// and it is the answer for every service of every other tenant, so both
// answers are remembered: a "no" briefly, so that a tenant's new service
// shows within probeNoTTL; a "yes" longer.
const (
	probeYesTTL    = 5 * time.Minute
	probeNoTTL     = 30 * time.Second
	probeCacheSize = 100_000
	// probeWorkers probes run at once for one list.
	probeWorkers = 4
)

type probeAnswer struct {
	ok bool
	at time.Time
}

// probeCache remembers whether a tenant has a span matching a list probe.
type probeCache struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]probeAnswer
}

func newProbeCache() *probeCache {
	return &probeCache{now: time.Now, m: map[string]probeAnswer{}}
}

// probeKey names a list probe of tenant id. Only the fields the list
// probes set take part.
func probeKey(id string, q tracestore.Query) string {
	var b strings.Builder
	for _, s := range []string{id, q.Service, q.Operation, q.SpanKind, q.RemoteService} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	for k, v := range q.Tags {
		b.WriteString(k)
		b.WriteByte(1)
		b.WriteString(v)
		b.WriteByte(0)
	}
	return b.String()
}

func (c *probeCache) get(key string) (ok, found bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, found := c.m[key]
	if !found {
		return false, false
	}
	ttl := probeNoTTL
	if a.ok {
		ttl = probeYesTTL
	}
	if c.now().Sub(a.at) > ttl {
		delete(c.m, key)
		return false, false
	}
	return a.ok, true
}

func (c *probeCache) put(key string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= probeCacheSize {
		now := c.now()
		for k, a := range c.m {
			if now.Sub(a.at) > probeNoTTL {
				delete(c.m, k)
			}
		}
		if len(c.m) >= probeCacheSize {
			clear(c.m) // every answer is recent: start over rather than grow
		}
	}
	c.m[key] = probeAnswer{ok: ok, at: c.now()}
}
