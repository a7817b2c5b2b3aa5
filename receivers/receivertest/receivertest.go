// Package receivertest holds what the receivers' tests share: putting raw
// bytes on a gRPC stream the way a broken or hostile client would, and
// reading the receivers' refusal counters.
package receivertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// RawCodec sends bytes as they are, so a test can put on the wire what
// protobuf-go refuses to marshal (invalid protobuf, invalid UTF-8 in proto3
// strings). It keeps the name "proto" so the server uses its own codec.
type RawCodec struct{}

// Marshal passes a []byte through.
func (RawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return nil, fmt.Errorf("RawCodec: %T", v)
}

// Unmarshal ignores the server's answer.
func (RawCodec) Unmarshal([]byte, any) error { return nil }

// Name is "proto".
func (RawCodec) Name() string { return "proto" }

// SendRaw streams pre-encoded messages to a client-streaming method (full
// name, e.g. "/envoy.service.metrics.v3.MetricsService/StreamMetrics"),
// closes its side and returns the status the server ended the stream with.
func SendRaw(t testing.TB, cc grpc.ClientConnInterface, method string, msgs ...[]byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	desc := &grpc.StreamDesc{ClientStreams: true}
	st, err := cc.NewStream(ctx, desc, method, grpc.ForceCodec(RawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := st.SendMsg(m); err != nil {
			break
		}
	}
	_ = st.CloseSend()
	return st.RecvMsg(new([]byte))
}

// Refused reads meshlens_receiver_refused_items_total from reg, by reason.
func Refused(t testing.TB, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "meshlens_receiver_refused_items_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}
