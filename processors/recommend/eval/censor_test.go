package eval

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCensoredReplaySweep replays the seeds listed in
// MESHLENS_EVAL_CENSOR_SWEEP (e.g. "42,1001-1020") in adaptive mode with
// the published timeouts applied, so that the engine sees only what a mesh
// enforcing them reports (requests slower than the timeout end as UT at
// it). Opt-in: a seed takes tens of seconds.
func TestCensoredReplaySweep(t *testing.T) {
	spec := os.Getenv("MESHLENS_EVAL_CENSOR_SWEEP")
	if spec == "" {
		t.Skip("opt-in sweep (tens of seconds per seed, run by hand for docs/recommendations.md): set MESHLENS_EVAL_CENSOR_SWEEP, e.g. 42,1001-1020; the censored behaviour itself is asserted by TestCensoredTimeout in make test")
	}
	var seeds []uint64
	for _, f := range strings.Split(spec, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(f), "-")
		a, err := strconv.ParseUint(lo, 10, 64)
		if err != nil {
			t.Fatalf("MESHLENS_EVAL_CENSOR_SWEEP: %v", err)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 64); err != nil {
				t.Fatalf("MESHLENS_EVAL_CENSOR_SWEEP: %v", err)
			}
		}
		for s := a; s <= b; s++ {
			seeds = append(seeds, s)
		}
	}
	out := make([]string, len(seeds))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i, seed := range seeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			x, err := RunReplay(ReplayConfig{Seed: seed, Edges: 100, Window: 30 * time.Minute, Target: 0.001, Adaptive: true, Censor: true})
			if err != nil {
				t.Error(err)
				return
			}
			out[i] = strconv.FormatUint(seed, 10) + ": " + fmtCensored(x)
		}()
	}
	wg.Wait()
	t.Log("censored adaptive replay\n" + strings.Join(out, "\n"))
}

func fmtCensored(x *ReplayResult) string {
	var out []string
	for _, er := range x.PerEdge {
		if r := er.Realised / 0.001; er.TimeoutMs > 0 && er.EvalSucc > 0 && (r < 0.5 || r > 1.5) {
			kind := "stationary"
			if er.Incident {
				kind = "incident"
			} else if er.Late {
				kind = "late"
			}
			out = append(out, kind+" "+strconv.FormatFloat(100*er.Realised, 'f', 3, 64)+"%")
		}
	}
	return strings.Join([]string{
		strconv.Itoa(x.WithinBand) + "/" + strconv.Itoa(x.Recommended) + " = " + strconv.FormatFloat(100*x.ShareWithinBand, 'f', 1, 64) + "% within band",
		"incident " + strconv.Itoa(x.IncidentRecommended) + " (" + strconv.Itoa(x.IncidentWithinBand) + " within)",
		"late " + strconv.Itoa(x.LateRecommended) + " (" + strconv.Itoa(x.LateWithinBand) + " within)",
		"others " + strconv.FormatFloat(100*x.StationaryShare, 'f', 1, 64) + "%",
		"wait −" + strconv.FormatFloat(100*x.ReductionVsNoTimeout, 'f', 1, 64) + "% / −" + strconv.FormatFloat(100*x.ReductionVs15s, 'f', 1, 64) + "%",
		"changes " + strconv.Itoa(x.Changes) + " (stationary edges " + strconv.Itoa(x.StationaryChanges) + ")",
		"out of band: " + strings.Join(out, " "),
	}, ", ")
}
