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
// The older, package-less protocol of SkyWalking 6 (/ServiceMeshMetricService/collect
// with service and instance IDs) is not served.
//
// The .proto files live in proto/ and the generated code, committed so that
// building needs no generator, in meshpb/; `make proto` (proto.mk) regenerates it.
package meshreport
