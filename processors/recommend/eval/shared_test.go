package eval

import (
	"sync"
	"testing"
	"time"

	"github.com/meshlens/meshlens/processors/recommend"
)

// The heavy runs are shared between the tests that assert on them and
// TestEvaluationReport, so a full `go test` runs each once.
var (
	replayOnce sync.Once
	replayRes  *ReplayResult
	replayErr  error

	overloadOnce sync.Once
	overloadRec  *recommend.Recommendation
	overloadRes  []OverloadResult
	overloadErr  error
)

func sharedReplay(t *testing.T) *ReplayResult {
	t.Helper()
	replayOnce.Do(func() {
		replayRes, replayErr = RunReplay(ReplayConfig{Seed: 42, Edges: 100, Window: 30 * time.Minute, Target: 0.001, Adaptive: true})
	})
	if replayErr != nil {
		t.Fatal(replayErr)
	}
	return replayRes
}

func sharedOverload(t *testing.T) (*recommend.Recommendation, []OverloadResult) {
	t.Helper()
	overloadOnce.Do(func() {
		cfg := OverloadConfig{Chain: DefaultChain(), Deadline: 1, Seed: 7}
		overloadRec, overloadErr = Calibrate(cfg)
		if overloadErr != nil || overloadRec == nil {
			return
		}
		for _, step := range []float64{1.4, 2} {
			overloadRes = append(overloadRes, RunOverload(cfg, overloadRec, step))
		}
	})
	if overloadErr != nil {
		t.Fatal(overloadErr)
	}
	return overloadRec, overloadRes
}
