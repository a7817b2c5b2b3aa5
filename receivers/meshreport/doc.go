// Package meshreport receives SkyWalking's service mesh probe protocol
// (gRPC service skywalking.v3.ServiceMeshMetricService, client-streaming
// method collect) and turns every metric into a model.Call.
//
// Wire forms accepted on the one method:
//
//   - SkyWalking 9.x and later: each stream message is a ServiceMeshMetrics
//     batch holding either HTTPServiceMeshMetrics (HTTP and gRPC calls) or
//     TCPServiceMeshMetrics (TCP connections).
//   - SkyWalking 8.x probes: each stream message is a single
//     ServiceMeshMetric whose fields 1-14 are numbered as those of
//     HTTPServiceMeshMetric. Its fields 1 and 2 are varints where the batch
//     form has length-delimited messages, so the protobuf runtime keeps them
//     as unknown fields; a message with no batch and unknown bytes is
//     re-read as one HTTPServiceMeshMetric.
//
// Conversion: service and instance names go to the two sides' Identity
// (an empty side is left for processors/identity); instance properties
// "namespace", "version", "workload", "cluster", "ip", "principal" and
// "pod" fill the matching Identity fields. Start is startTime (else
// endTime - latency, else the receive time); Duration is latency when set,
// else endTime - startTime. responseCode is the HTTP status; for gRPC,
// status=true is gRPC OK and status=false codes.Unknown (2), since the
// probe sends no gRPC code. tlsMode "NONE"/"mTLS"/"TLS" (any case) maps to
// model.TLSNone/TLSMutual/TLSSimple, anything else to none.
// internalErrorCode becomes the Envoy response flags ("-" meaning none).
// TCP receivedBytes/sentBytes become RequestBytes/ResponseBytes, and a TCP
// record counts as one opened and closed connection.
// internalRequestLatencyNanos and internalResponseLatencyNanos have no
// place in model.Call and are dropped.
//
// A metric is rejected, with a logged reason naming the field, when both
// service names are empty, endTime is before startTime, a timestamp is
// negative or outside years 2000-2200, latency is negative, the protocol or
// detect point enum is unknown, responseCode is outside 0-999, a byte count
// is negative, or a name exceeds 4096 bytes. The rest of its batch is kept.
// Invalid UTF-8 in any string is replaced with U+FFFD and the metric kept:
// messages are received as raw bytes and decoded leniently (lenient.go),
// since protobuf-go would refuse the whole message, and end the stream.
//
// The older, package-less protocol of SkyWalking 6 (/ServiceMeshMetricService/collect
// with service and instance IDs) is not served.
//
// The .proto files live in proto/ and the generated code, committed so that
// building needs no generator, in meshpb/; `make proto` (proto.mk) regenerates it.
package meshreport
