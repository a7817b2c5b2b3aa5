package e2e

import (
	"testing"
	"time"

	"github.com/meshlens/meshlens/query/remotestorage/storagev2"
)

// TestJaegerRemoteStorage reads spans ingested over Zipkin back through the
// Jaeger remote storage v2 gRPC API of the running binary, as Jaeger v2
// does when it uses meshlens as its storage.
func TestJaegerRemoteStorage(t *testing.T) {
	in := start(t, t.TempDir())
	postZipkin(t, "http://"+in.addrs["zipkin"], "remote-storage-svc", "v")
	ctx := ctxTimeout(t, 30*time.Second)
	client := storagev2.NewTraceReaderClient(dialALS(t, in.addrs["grpc"]))
	resp, err := client.GetServices(ctx, &storagev2.GetServicesRequest{})
	if err != nil {
		t.Fatalf("GetServices: %v", err)
	}
	found := false
	for _, s := range resp.GetServices() {
		found = found || s == "remote-storage-svc"
	}
	if !found {
		t.Errorf("GetServices = %v, want remote-storage-svc", resp.GetServices())
	}
	ops, err := client.GetOperations(ctx, &storagev2.GetOperationsRequest{Service: "remote-storage-svc"})
	if err != nil || len(ops.GetOperations()) != 1 {
		t.Errorf("GetOperations = %v, %v; want the one span name", ops.GetOperations(), err)
	}
}
