package recommend

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/meshlens/meshlens/model"
)

type model_Call = model.Call

func benchCall(rng *rand.Rand, now time.Time, i int) model.Call {
	return model.Call{
		Source:      model.Identity{Service: fmt.Sprintf("svc-%02d", i%50), Namespace: "bench"},
		Destination: model.Identity{Service: fmt.Sprintf("svc-%02d", (i*7)%50), Namespace: "bench"},
		Endpoint:    "GET:/x", Method: "GET", Start: now.Add(-time.Duration(rng.IntN(60)) * time.Second),
		Duration: time.Duration(rng.IntN(50000)) * time.Microsecond, StatusCode: 200, GRPCStatus: -1,
		DetectPoint: model.DetectPoint(i % 2),
	}
}
