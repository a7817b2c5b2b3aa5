// Package envoyals receives Envoy access logs over the ALS v3 gRPC stream
// (envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs) and turns
// each HTTP and TCP entry into a model.Call.
//
// Every stream starts with an identifier naming the Envoy node. The node is
// parsed once per stream into the proxy's own identity and role:
//
//   - sidecar ("sidecar~" node ids): an entry whose upstream cluster is
//     "inbound|..." (or, with no cluster, that was addressed to one of the
//     proxy's INSTANCE_IPS) is the server side (DetectServer): Destination is
//     the proxy itself, Source is the downstream peer. Anything else is the
//     client side (DetectClient): Source is the proxy, Destination the
//     upstream peer.
//   - gateway ("router~"): each entry yields two calls. The downstream leg
//     (client -> gateway) is reported with DetectServer and the gateway as
//     Destination; the upstream leg (gateway -> backend) with DetectClient
//     and the gateway as Source. The upstream leg is what Istio reports for
//     gateways (reporter="source"); the downstream leg is what lets
//     topology show who calls the gateway. Consumers that want Istio's exact
//     series drop server-side calls whose Destination is a gateway.
//   - waypoint ("waypoint~"): one call with DetectProxy between the
//     downstream and upstream peers; the waypoint itself is on neither side.
//
// The peer is named from Istio's peer metadata in the entry's filter state
// (upstream_peer / downstream_peer as a google.protobuf.Struct, or the
// pre-1.24 wasm.* FlatBuffer); otherwise only its address is filled
// (IP, Instance = "ip:port" for upstream hosts) and processors/identity
// resolves it from Call.UpstreamCluster, Call.Authority or the IP. Envoy
// logs filter state only when asked: the ALS config (Istio's envoyHttpAls /
// envoyTcpAls extension providers' filterStateObjectsToLog, or an
// EnvoyFilter) must list upstream_peer and downstream_peer (and the wasm.*
// keys for older proxies).
//
// Messages are decoded straight from the wire (wire.go) into a flat entry,
// so the hot path costs two allocations per HTTP entry (path and request
// id); every per-stream cache is bounded.
package envoyals

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/pipeline"
)

// Config controls the receiver. Start from DefaultConfig.
type Config struct {
	// HTTP and TCP enable the two kinds of entries; entries of a disabled
	// kind are acknowledged and ignored.
	HTTP bool `yaml:"http"`
	TCP  bool `yaml:"tcp"`
	// MaxEntriesPerMessage bounds the entries converted from one message;
	// the excess is refused (counted as "too_many_entries").
	MaxEntriesPerMessage int `yaml:"max_entries_per_message"`
	// ServiceLabels are the workload labels tried in order for a service
	// name; the workload name is the fallback.
	ServiceLabels []string `yaml:"service_labels"`
	// TrustDomain builds the proxy's SPIFFE principal from its
	// SERVICE_ACCOUNT when no certificate is logged.
	TrustDomain string `yaml:"trust_domain"`
	// TCPOpenLoggedSeparately is set when Envoy is configured to log at
	// upstream connect (flush_access_log_on_connected): the end-of-connection
	// entry then does not count the connection as opened again.
	TCPOpenLoggedSeparately bool `yaml:"tcp_open_logged_separately"`
	// GRPCPathHeuristic treats HTTP/2 POSTs to "/pkg.Service/Method" as
	// gRPC when no content-type or grpc-status was logged.
	GRPCPathHeuristic bool `yaml:"grpc_path_heuristic"`
	// PeerCacheSize bounds the decoded peer metadata kept per stream.
	PeerCacheSize int `yaml:"peer_cache_size"`
}

// DefaultConfig is HTTP and TCP on, 10,000 entries per message, Istio's
// service naming (canonical name, then app label, then workload).
func DefaultConfig() Config {
	return Config{
		HTTP:                 true,
		TCP:                  true,
		MaxEntriesPerMessage: 10000,
		ServiceLabels:        []string{labelCanonicalName, labelApp},
		TrustDomain:          "cluster.local",
		GRPCPathHeuristic:    true,
		PeerCacheSize:        256,
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.MaxEntriesPerMessage <= 0 {
		return fmt.Errorf("envoyals: max_entries_per_message must be positive, got %d", c.MaxEntriesPerMessage)
	}
	if c.PeerCacheSize <= 0 {
		return fmt.Errorf("envoyals: peer_cache_size must be positive, got %d", c.PeerCacheSize)
	}
	return nil
}

// Receiver implements the ALS v3 gRPC service.
type Receiver struct {
	cfg    Config
	next   pipeline.CallConsumer
	tel    *pipeline.ReceiverTelemetry
	logger *slog.Logger
}

// New returns a receiver that hands converted calls to next. Zero numeric
// fields of cfg take DefaultConfig's values.
func New(cfg Config, next pipeline.CallConsumer, tel *pipeline.Telemetry, logger *slog.Logger) *Receiver {
	def := DefaultConfig()
	if cfg.MaxEntriesPerMessage <= 0 {
		cfg.MaxEntriesPerMessage = def.MaxEntriesPerMessage
	}
	if cfg.PeerCacheSize <= 0 {
		cfg.PeerCacheSize = def.PeerCacheSize
	}
	if cfg.ServiceLabels == nil {
		cfg.ServiceLabels = def.ServiceLabels
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if tel == nil {
		// Counted on a private registry nobody scrapes (tests, tools).
		tel = pipeline.NewTelemetry(prometheus.NewRegistry())
	}
	return &Receiver{
		cfg:    cfg,
		next:   next,
		tel:    tel.Receiver("envoy_als", "grpc"),
		logger: logger.With("receiver", "envoy_als"),
	}
}

// alsServiceDesc registers StreamAccessLogs with a handler that receives
// each message as raw bytes (see wire.go) instead of the generated
// decoder's object tree. The wire protocol is unchanged.
var alsServiceDesc = grpc.ServiceDesc{
	ServiceName: "envoy.service.accesslog.v3.AccessLogService",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "StreamAccessLogs",
		Handler:       func(srv any, s grpc.ServerStream) error { return srv.(*Receiver).stream(s) },
		ClientStreams: true,
	}},
	Metadata: "envoy/service/accesslog/v3/als.proto",
}

// Register adds the ALS service to s.
func (r *Receiver) Register(s *grpc.Server) {
	s.RegisterService(&alsServiceDesc, r)
}

// streamState is what one ALS stream remembers between messages.
type streamState struct {
	conv    *converter
	logName string
	nodeKey string
	buf     []model.Call
	lastLog time.Time
}

// stream handles one Envoy stream until it ends or fails.
func (r *Receiver) stream(stream grpc.ServerStream) error {
	var st streamState
	// The message lands in an Empty: the protobuf runtime checks the
	// top-level framing and keeps the fields as raw bytes for wire.go.
	var raw emptypb.Empty
	var msg message
	for {
		err := stream.RecvMsg(&raw)
		if errors.Is(err, io.EOF) {
			return stream.SendMsg(&alsv3.StreamAccessLogsResponse{})
		}
		if err != nil {
			return r.recvError(err)
		}
		b := raw.ProtoReflect().GetUnknown()
		if err := splitMessage(b, &msg); err != nil {
			r.tel.Refused(1, "malformed")
			return status.Errorf(codes.InvalidArgument, "envoy ALS: malformed StreamAccessLogsMessage: %v", err)
		}
		if msg.identifier != nil {
			var id alsv3.StreamAccessLogsMessage_Identifier
			if err := proto.Unmarshal(msg.identifier, &id); err != nil {
				r.tel.Refused(len(msg.http)+len(msg.tcp), "malformed")
				return status.Errorf(codes.InvalidArgument, "envoy ALS: malformed identifier: %v", err)
			}
			// Envoy sends the identifier on the first message only; a later
			// one (a different node on the same stream) replaces it.
			key := id.GetNode().GetId() + "\x00" + id.GetNode().GetCluster()
			if st.conv == nil || key != st.nodeKey {
				st.conv = newConverter(&r.cfg, parseNode(id.GetNode(), r.cfg.ServiceLabels, r.cfg.TrustDomain))
				st.nodeKey = key
			}
			st.logName = id.GetLogName()
		}
		if st.conv == nil {
			r.tel.Refused(len(msg.http)+len(msg.tcp), "missing_identifier")
			return status.Error(codes.InvalidArgument,
				"envoy ALS: the first message of a stream must carry an identifier (node, log_name)")
		}
		if err := r.handle(stream, &st, &msg); err != nil {
			return err
		}
	}
}

// recvError accounts for a receive failure and returns the stream's final
// status. A message whose top-level framing does not parse is answered by
// grpc-go itself, before the handler sees the error, with INTERNAL "grpc:
// failed to unmarshal the received message: ..." (changing the code would
// take a server-wide codec). Malformed entries inside a well-framed message
// are caught by wire.go and end the stream with INVALID_ARGUMENT. Either
// way the server and other streams carry on.
func (r *Receiver) recvError(err error) error {
	s, ok := status.FromError(err)
	if ok && s.Code() == codes.Internal && strings.Contains(s.Message(), "unmarshal") {
		r.tel.Refused(1, "malformed")
		r.logger.Warn("malformed ALS message, closing stream", "err", s.Message())
		return status.Errorf(codes.InvalidArgument,
			"envoy ALS: malformed envoy.service.accesslog.v3.StreamAccessLogsMessage: %s", s.Message())
	}
	return err
}

// handle converts one message and hands the calls on. Entries that do not
// decode or lack required fields are refused and counted; the rest of the
// message is kept. A malformed entry still ends the stream (after the good
// entries are delivered): a proxy sending bad protobuf is broken.
func (r *Receiver) handle(stream grpc.ServerStream, st *streamState, msg *message) error {
	st.buf = st.buf[:0]
	var accepted, refused, tooMany int
	var firstErr, malformed error
	var reasons map[string]int
	refuse := func(reason string, err error) {
		refused++
		if firstErr == nil {
			firstErr = err
		}
		if reasons == nil {
			reasons = make(map[string]int, 2)
		}
		reasons[reason]++
	}
	max := r.cfg.MaxEntriesPerMessage
	conv := st.conv
	run := func(entries [][]byte, enabled bool, decode func([]byte, *entry, *interner) error,
		appendCall func([]model.Call, *entry) ([]model.Call, error)) {
		if !enabled {
			return
		}
		if len(entries) > max {
			tooMany += len(entries) - max
			entries = entries[:max]
		}
		for _, raw := range entries {
			if err := decode(raw, &conv.e, &conv.strs); err != nil {
				refuse("malformed", err)
				if malformed == nil {
					malformed = err
				}
				continue
			}
			var err error
			if st.buf, err = appendCall(st.buf, &conv.e); err != nil {
				refuse(reasonOf(err), err)
				continue
			}
			accepted++
		}
	}
	run(msg.http, r.cfg.HTTP, decodeHTTP, conv.appendHTTP)
	run(msg.tcp, r.cfg.TCP, decodeTCP, conv.appendTCP)

	if tooMany > 0 {
		r.tel.Refused(tooMany, "too_many_entries")
	}
	for reason, n := range reasons {
		r.tel.Refused(n, reason)
	}
	if (refused > 0 || tooMany > 0) && time.Since(st.lastLog) > time.Second {
		// At most one line per second per stream: a misconfigured proxy
		// must not flood the log.
		st.lastLog = time.Now()
		r.logger.Warn("refused ALS entries, kept the rest of the message",
			"node", conv.proxy.nodeID, "log_name", st.logName,
			"refused", refused, "too_many", tooMany, "first_reason", errString(firstErr))
	}
	if len(st.buf) > 0 {
		if err := r.next.ConsumeCalls(stream.Context(), st.buf); err != nil {
			r.tel.RefusedErr(accepted, err)
			if errors.Is(err, pipeline.ErrOverloaded) {
				r.logger.Debug("pipeline overloaded, refusing ALS stream", "node", conv.proxy.nodeID)
			} else {
				r.logger.Warn("pipeline refused ALS calls", "node", conv.proxy.nodeID, "err", err)
			}
			return pipeline.GRPCStatus(err)
		}
		r.tel.Accepted(accepted)
	}
	// Don't keep an unusually large buffer alive for the rest of the stream.
	if cap(st.buf) > 4*max {
		st.buf = nil
	}
	if malformed != nil {
		return status.Errorf(codes.InvalidArgument, "envoy ALS: malformed log entry: %v", malformed)
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
