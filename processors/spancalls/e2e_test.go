package spancalls

import (
	"net"
	"net/http"
	"testing"
	"time"

	zipkinmodel "github.com/openzipkin/zipkin-go/model"
	reporterhttp "github.com/openzipkin/zipkin-go/reporter/http"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/receivers/zipkin"
)

// TestFromZipkinReceiver drives the real path of a trace-only mesh: two
// sidecars report their halves of one hop to the Zipkin receiver over
// HTTP, each in its own request, and the processor behind it yields both
// calls and pairs the service-graph edge across the two batches.
func TestFromZipkinReceiver(t *testing.T) {
	o := &outputs{}
	p, _ := newProc(o, Config{})
	mux := http.NewServeMux()
	zipkin.New(zipkin.Config{}, p, nil, nil).Register(mux)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	go srv.Serve(lis)
	defer srv.Close()
	url := "http://" + lis.Addr().String() + "/api/v2/spans"

	ts := time.Now()
	tid := zipkinmodel.TraceID{High: 7, Low: 8}
	halves := []zipkinmodel.SpanModel{
		{
			SpanContext: zipkinmodel.SpanContext{TraceID: tid, ID: 0x42}, Name: "details:9080/*", Kind: zipkinmodel.Client,
			Timestamp: ts, Duration: 7 * time.Millisecond,
			LocalEndpoint: &zipkinmodel.Endpoint{ServiceName: "productpage.bookinfo", IPv4: net.ParseIP("10.8.0.5")},
			Tags: map[string]string{"istio.canonical_service": "productpage", "istio.namespace": "bookinfo",
				"upstream_cluster": "outbound|9080||details.bookinfo.svc.cluster.local", "http.method": "GET",
				"http.url": "http://details:9080/details/0", "http.status_code": "200"},
		},
		{
			SpanContext: zipkinmodel.SpanContext{TraceID: tid, ID: 0x42}, Name: "details.bookinfo.svc.cluster.local:9080/*", Kind: zipkinmodel.Server, Shared: true,
			Timestamp: ts.Add(time.Millisecond), Duration: 5 * time.Millisecond,
			LocalEndpoint: &zipkinmodel.Endpoint{ServiceName: "details.bookinfo", IPv4: net.ParseIP("10.8.0.7")},
			Tags: map[string]string{"node_id": "sidecar~10.8.0.7~details-v1-5f4d584748-x2x2x.bookinfo~bookinfo.svc.cluster.local",
				"http.method": "GET", "http.url": "http://details:9080/details/0", "http.status_code": "200", "peer.address": "10.8.0.5"},
		},
	}
	for _, h := range halves { // one sidecar, one request
		rep := reporterhttp.NewReporter(url)
		rep.Send(h)
		if err := rep.Close(); err != nil {
			t.Fatal(err)
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.calls) != 2 {
		t.Fatalf("%d calls", len(o.calls))
	}
	cl := o.call(t, model.DetectClient, "productpage", "details")
	if cl.Destination.Namespace != "bookinfo" || cl.Endpoint != "GET:/details/0" || cl.Source.IP != "10.8.0.5" {
		t.Errorf("client call %+v", cl)
	}
	// The server half came alone: its source is the peer address, left for
	// processors/identity to resolve.
	sv := o.call(t, model.DetectServer, "", "details")
	if sv.Source.IP != "10.8.0.5" || sv.Destination.Instance != "details-v1-5f4d584748-x2x2x" || sv.Destination.Namespace != "bookinfo" {
		t.Errorf("server call %+v", sv)
	}
	if len(o.edges) != 1 || o.edges[0].Client != "productpage.bookinfo" || o.edges[0].Server != "details.bookinfo" ||
		o.edges[0].ClientDuration != 7*time.Millisecond || o.edges[0].ServerDuration != 5*time.Millisecond {
		t.Errorf("edges %+v", o.edges)
	}
}
