package errorapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/processors/errorlog"
	"github.com/meshlens/meshlens/query/errorapi"
)

// The error log is one branch of the call fan-out; the API reads it.
func Example() {
	log := errorlog.New(errorlog.Config{}, nil, nil)
	mux := http.NewServeMux()
	errorapi.New(log, nil).Register(mux)

	_ = log.ConsumeCalls(context.Background(), []model.Call{{
		Source:      model.Identity{Service: "productpage"},
		Destination: model.Identity{Service: "reviews"},
		Start:       time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		StatusCode:  503, GRPCStatus: -1, ResponseFlags: "UF",
	}})

	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/meshlens/v1/errors?service=reviews&flag=UF")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(string(body))
	// Output:
	// {"records":[{"time":"2026-01-02T03:04:05Z","source":{"service":"productpage"},"destination":{"service":"reviews"},"status":503,"response_flags":["UF"],"duration_ms":0,"detect_point":"client","protocol":"http","tls":"none"}]}
}
