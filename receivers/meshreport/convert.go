package meshreport

import (
	"fmt"
	"strings"
	"time"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/receivers/meshreport/meshpb"
)

// grpcUnknown is codes.Unknown: the gRPC status given to a failed gRPC call
// whose probe only said "status: false".
const grpcUnknown = 2

// maxFieldLen bounds every string taken from the wire. A longer name is a
// broken or hostile probe, and would otherwise become a label value.
const maxFieldLen = 4096

// invalidError names the field that made a metric unusable.
type invalidError struct {
	field, reason string
}

func (e *invalidError) Error() string { return e.field + ": " + e.reason }

func invalid(field, format string, args ...any) error {
	return &invalidError{field: field, reason: fmt.Sprintf(format, args...)}
}

// legacyMetric re-reads a pre-9.x single ServiceMeshMetric that arrived in a
// ServiceMeshMetrics frame (see the package doc). It returns nil when the
// message is a batch or empty. Invalid UTF-8 in its strings is replaced
// with U+FFFD, as in batches (unmarshalLenient).
func legacyMetric(m *meshpb.ServiceMeshMetrics) (*meshpb.HTTPServiceMeshMetric, error) {
	if m.GetMetrics() != nil {
		return nil, nil
	}
	raw := m.ProtoReflect().GetUnknown()
	if len(raw) == 0 {
		return nil, nil
	}
	var h meshpb.HTTPServiceMeshMetric
	if _, err := unmarshalLenient(raw, &h); err != nil {
		return nil, fmt.Errorf("legacy ServiceMeshMetric: %w", err)
	}
	return &h, nil
}

// convertHTTP fills c from one HTTP or gRPC metric; now stands in for
// missing timestamps.
func convertHTTP(m *meshpb.HTTPServiceMeshMetric, now time.Time, c *model.Call) error {
	*c = model.Call{GRPCStatus: -1}
	if err := identities(c, m.GetSourceServiceName(), m.GetSourceServiceInstance(),
		m.GetDestServiceName(), m.GetDestServiceInstance()); err != nil {
		return err
	}
	if err := timing(c, m.GetStartTime(), m.GetEndTime(), int64(m.GetLatency()), now); err != nil {
		return err
	}
	dp, err := detectPoint(m.GetDetectPoint())
	if err != nil {
		return err
	}
	c.DetectPoint = dp
	c.TLS = tlsMode(m.GetTlsMode())
	flags, err := responseFlags(m.GetInternalErrorCode())
	if err != nil {
		return err
	}
	c.ResponseFlags = flags

	code := m.GetResponseCode()
	if code < 0 || code > 999 {
		return invalid("responseCode", "%d is not an HTTP status", code)
	}
	c.StatusCode = int(code)

	ep := m.GetEndpoint()
	if len(ep) > maxFieldLen {
		return invalid("endpoint", "longer than %d bytes", maxFieldLen)
	}
	c.Endpoint = ep

	switch m.GetProtocol() {
	case meshpb.Protocol_HTTP:
		c.Protocol = model.ProtocolHTTP
		if strings.HasPrefix(ep, "/") {
			c.Path = ep
		}
	case meshpb.Protocol_gRPC:
		c.Protocol = model.ProtocolGRPC
		c.Path = ep
		// The probe reports success as a boolean only; keep failures
		// visible as errors (model.Call.IsError) without inventing detail.
		if m.GetStatus() {
			c.GRPCStatus = 0
		} else {
			c.GRPCStatus = grpcUnknown
		}
	default:
		return invalid("protocol", "unknown value %d", int32(m.GetProtocol()))
	}
	applyProperties(&c.Source, m.GetSourceInstanceProperties())
	applyProperties(&c.Destination, m.GetDestInstanceProperties())
	return nil
}

// convertTCP fills c from one TCP connection metric.
func convertTCP(m *meshpb.TCPServiceMeshMetric, now time.Time, c *model.Call) error {
	*c = model.Call{GRPCStatus: -1, Protocol: model.ProtocolTCP}
	if err := identities(c, m.GetSourceServiceName(), m.GetSourceServiceInstance(),
		m.GetDestServiceName(), m.GetDestServiceInstance()); err != nil {
		return err
	}
	if err := timing(c, m.GetStartTime(), m.GetEndTime(), 0, now); err != nil {
		return err
	}
	dp, err := detectPoint(m.GetDetectPoint())
	if err != nil {
		return err
	}
	c.DetectPoint = dp
	c.TLS = tlsMode(m.GetTlsMode())
	flags, err := responseFlags(m.GetInternalErrorCode())
	if err != nil {
		return err
	}
	c.ResponseFlags = flags
	if m.GetReceivedBytes() < 0 {
		return invalid("receivedBytes", "negative (%d)", m.GetReceivedBytes())
	}
	if m.GetSentBytes() < 0 {
		return invalid("sentBytes", "negative (%d)", m.GetSentBytes())
	}
	// Envoy's TCP access log, which SkyWalking's adapters translate, counts
	// bytes from the downstream's point of view: received is the request
	// direction, sent the response direction.
	c.RequestBytes = uint64(m.GetReceivedBytes())
	c.ResponseBytes = uint64(m.GetSentBytes())
	// SkyWalking reports one record per (finished) connection.
	c.ConnOpened, c.ConnClosed = true, true
	applyProperties(&c.Source, m.GetSourceInstanceProperties())
	applyProperties(&c.Destination, m.GetDestInstanceProperties())
	return nil
}

func identities(c *model.Call, srcSvc, srcInst, dstSvc, dstInst string) error {
	if srcSvc == "" && dstSvc == "" {
		return invalid("sourceServiceName/destServiceName", "both empty")
	}
	for _, f := range [...]struct{ name, v string }{
		{"sourceServiceName", srcSvc}, {"sourceServiceInstance", srcInst},
		{"destServiceName", dstSvc}, {"destServiceInstance", dstInst},
	} {
		if len(f.v) > maxFieldLen {
			return invalid(f.name, "longer than %d bytes", maxFieldLen)
		}
	}
	// An empty side is left empty for processors/identity to resolve (it
	// becomes model.Unknown there, never a dropped record).
	c.Source.Service, c.Source.Instance = srcSvc, srcInst
	c.Destination.Service, c.Destination.Instance = dstSvc, dstInst
	return nil
}

// timing sets Start and Duration. Timestamps are Unix milliseconds; latency
// (HTTP only) wins over end-start because it is what the proxy measured.
func timing(c *model.Call, startMs, endMs, latencyMs int64, now time.Time) error {
	if startMs < 0 {
		return invalid("startTime", "negative (%d)", startMs)
	}
	if endMs < 0 {
		return invalid("endTime", "negative (%d)", endMs)
	}
	if latencyMs < 0 {
		return invalid("latency", "negative (%d)", latencyMs)
	}
	if startMs != 0 && endMs != 0 && endMs < startMs {
		return invalid("endTime", "%d is before startTime %d", endMs, startMs)
	}
	// Bound timestamps to a sane range (year 2000 to 2200) so that the
	// conversion to time.Time cannot overflow.
	const minMs, maxMs = 946684800000, 7258118400000
	for _, f := range [...]struct {
		name string
		v    int64
	}{{"startTime", startMs}, {"endTime", endMs}} {
		if f.v != 0 && (f.v < minMs || f.v > maxMs) {
			return invalid(f.name, "%d ms is outside years 2000-2200", f.v)
		}
	}
	if latencyMs > 0 {
		c.Duration = time.Duration(latencyMs) * time.Millisecond
	} else if startMs != 0 && endMs != 0 {
		c.Duration = time.Duration(endMs-startMs) * time.Millisecond
	}
	switch {
	case startMs != 0:
		c.Start = time.UnixMilli(startMs)
	case endMs != 0:
		c.Start = time.UnixMilli(endMs).Add(-c.Duration)
	default:
		c.Start = now.Add(-c.Duration)
	}
	return nil
}

func detectPoint(d meshpb.DetectPoint) (model.DetectPoint, error) {
	switch d {
	case meshpb.DetectPoint_client:
		return model.DetectClient, nil
	case meshpb.DetectPoint_server:
		return model.DetectServer, nil
	case meshpb.DetectPoint_proxy:
		return model.DetectProxy, nil
	}
	return 0, invalid("detectPoint", "unknown value %d", int32(d))
}

// tlsMode reads SkyWalking's tlsMode strings: "NONE", "mTLS" or "TLS"
// (compared case-insensitively). Anything else, including empty, is
// treated as none: the call still happened, and a probe that does not know
// the transport security should not lose it.
func tlsMode(s string) model.TLSMode {
	switch {
	case strings.EqualFold(s, "mTLS"):
		return model.TLSMutual
	case strings.EqualFold(s, "TLS"):
		return model.TLSSimple
	}
	return model.TLSNone
}

// responseFlags normalises Envoy's response flags as a probe sends them in
// internalErrorCode: "-" (Envoy's "none") becomes empty.
func responseFlags(s string) (string, error) {
	if s == "-" {
		return "", nil
	}
	if len(s) > 256 {
		return "", invalid("internalErrorCode", "longer than 256 bytes")
	}
	return s, nil
}

// applyProperties takes what SkyWalking adapters put in instance
// properties (Kubernetes metadata of the pod) into the identity.
func applyProperties(id *model.Identity, props []*meshpb.KeyStringValuePair) {
	for _, p := range props {
		v := p.GetValue()
		if v == "" || len(v) > maxFieldLen {
			continue
		}
		switch strings.ToLower(p.GetKey()) {
		case "namespace", "pod_namespace":
			id.Namespace = v
		case "cluster", "cluster_id":
			id.Cluster = v
		case "workload", "workload_name":
			id.Workload = v
		case "version", "service_version":
			id.Version = v
		case "ip", "pod_ip", "ipv4":
			id.IP = v
		case "principal":
			id.Principal = v
		case "pod", "pod_name":
			if id.Instance == "" {
				id.Instance = v
			}
		}
	}
}
