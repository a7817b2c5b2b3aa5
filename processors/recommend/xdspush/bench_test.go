package xdspush

import (
	"fmt"
	"testing"

	"github.com/meshlens/meshlens/processors/recommend"
)

// BenchmarkSync1000Services measures one full rebuild and push: 1,000
// services, each with a service-wide limit and two endpoint limits, all
// changed, so every service's LocalRateLimit is built, hashed and set as a
// new snapshot.
func BenchmarkSync1000Services(b *testing.B) {
	const n = 1000
	recs := func(rate float64) []recommend.Recommendation {
		out := make([]recommend.Recommendation, 0, 3*n)
		for i := 0; i < n; i++ {
			svc := fmt.Sprintf("svc-%04d.default", i)
			out = append(out, limit(svc, rate, int(rate/5)),
				epLimit(svc, "GET:/items/{id}", rate/4), epLimit(svc, "/pkg.Svc/Get", rate/8))
		}
		return out
	}
	src := &fakeSource{}
	p := New(Config{}, src, nil)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		src.set(recs(float64(100 + 50*(i%2)))...)
		b.StartTimer()
		p.Sync()
	}
	st, _ := p.Status("svc-0001.default")
	if len(st.Services) != 1 || st.Services[0].EndpointLimits != 2 {
		b.Fatalf("status %+v", st.Services)
	}
}

// BenchmarkSyncUnchanged1000Services is a recomputation that changes no
// limit: everything is rebuilt and hashed, nothing is pushed.
func BenchmarkSyncUnchanged1000Services(b *testing.B) {
	const n = 1000
	var recs []recommend.Recommendation
	for i := 0; i < n; i++ {
		svc := fmt.Sprintf("svc-%04d.default", i)
		recs = append(recs, limit(svc, 100, 20), epLimit(svc, "GET:/items/{id}", 25))
	}
	src := &fakeSource{}
	p := New(Config{}, src, nil)
	src.set(recs...)
	p.Sync()
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		src.set(recs...)
		b.StartTimer()
		p.Sync()
	}
	if st, _ := p.Status(""); st.Generation != 1 {
		b.Fatalf("unchanged syncs pushed: generation %d", st.Generation)
	}
}
