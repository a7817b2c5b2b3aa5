package errorlog

import (
	"context"
	"testing"

	"github.com/meshlens/meshlens/model"
)

func TestTenantFilterAndBudget(t *testing.T) {
	now := t0
	// Burst 1 per (tenant, service, code): tenant b's error must still be
	// recorded after tenant a used the budget for the same service and code.
	l := newLog(Config{Burst: 1, RatePerSecond: 0.001}, &now)
	a, b := call("reviews", 503, "", t0), call("reviews", 503, "", t0)
	a.Tenant, b.Tenant = "team-a", "team-b"
	_ = l.ConsumeCalls(context.Background(), []model.Call{a, a, b})
	for _, tc := range []struct {
		tenant string
		want   int
	}{{"team-a", 1}, {"team-b", 1}, {"", 2}, {"team-c", 0}} {
		got, err := l.Query(context.Background(), Filter{Tenant: tc.tenant})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.want {
			t.Errorf("tenant %q: %d records, want %d", tc.tenant, len(got), tc.want)
		}
		for _, r := range got {
			if tc.tenant != "" && r.Tenant != tc.tenant {
				t.Errorf("tenant %q got a record of %q", tc.tenant, r.Tenant)
			}
		}
	}
}
