package errorlog

import (
	"context"
	"testing"
	"time"

	"github.com/meshlens/meshlens/model"
)

// BenchmarkConsumeCalls: a batch of 100 calls of which 10 are errors, ns and
// allocs per call.
func BenchmarkConsumeCalls(b *testing.B) {
	l := New(Config{}, nil, nil)
	batch := make([]model.Call, 100)
	for i := range batch {
		st := 200
		if i%10 == 0 {
			st = 503
		}
		batch[i] = call("reviews", st, "", time.Now())
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i += len(batch) {
		_ = l.ConsumeCalls(context.Background(), batch)
	}
}
