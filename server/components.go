package server

import (
	"context"
	"net"
	"runtime/debug"

	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/demo"
	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/processors/redmetrics"
	"github.com/meshlens/meshlens/query/promapi"
	"github.com/meshlens/meshlens/query/topology"
	"github.com/meshlens/meshlens/receivers/envoyals"
)

// This file is the one registration list: every receiver, processor and API
// meshlens runs is created and wired here, and nowhere else.

// callProcessors run in order on every batch of calls before the sinks.
func (s *Server) callProcessors() []pipeline.CallProcessor {
	return nil
}

// callSinks receive every processed batch of calls.
func (s *Server) callSinks() pipeline.CallConsumer {
	return fanout{s.agg}
}

func (s *Server) buildComponents(ctx context.Context) error {
	if s.cfg.Receivers.EnvoyALS.Enabled {
		envoyals.New(s.cfg.Receivers.EnvoyALS.Config, s.queue, s.tel, s.logger).Register(s.grpcServer)
	}

	prom := promapi.New(promapi.Options{
		Queryable:    s.queryable,
		Logger:       s.logger.With("component", "promapi"),
		Registerer:   s.reg,
		QueryTimeout: s.cfg.Query.Timeout,
		MaxSamples:   s.cfg.Query.MaxSamples,
		BuildInfo:    buildInfo(),
		Metadata: func() map[string][]promapi.MetadataEntry {
			out := map[string][]promapi.MetadataEntry{}
			for name, m := range redmetrics.Metadata() {
				out[name] = []promapi.MetadataEntry{{Type: m.Type, Help: m.Help, Unit: m.Unit}}
			}
			return out
		},
		ConfigYAML: func() string {
			out, _ := yaml.Marshal(s.cfg)
			return string(out)
		},
	})
	prom.Register(s.mux)
	s.closers = append(s.closers, func(context.Context) error { return prom.Close() })
	topology.New(topology.Options{
		Engine:    prom.Engine(),
		Queryable: s.queryable,
		Logger:    s.logger.With("component", "topology"),
	}).Register(s.mux)
	return nil
}

// grpcServices names what the gRPC listener serves, for the start-up log.
func (s *Server) grpcServices() []string {
	var out []string
	for name := range s.grpcServer.GetServiceInfo() {
		out = append(out, name)
	}
	return out
}

// startExtraListeners binds the protocol-specific listeners.
func (s *Server) startExtraListeners(bind func(proto, name, addr, what string) (net.Listener, error)) error {
	return nil
}

// startBackground starts work that runs beside the servers: the demo
// traffic generator, aimed at this server's own listeners.
func (s *Server) startBackground(ctx context.Context) {
	if !s.cfg.Demo.Enabled {
		return
	}
	cfg := demo.Config{Rate: s.cfg.Demo.Rate, Seed: s.cfg.Demo.Seed}
	if s.cfg.Receivers.EnvoyALS.Enabled {
		cfg.ALSAddr = loopback(s.Addr("grpc"))
	}
	if s.cfg.Receivers.Zipkin.Enabled && s.Addr("zipkin") != "" {
		cfg.ZipkinURL = "http://" + loopback(s.Addr("zipkin"))
	}
	g, err := demo.NewGenerator(cfg, s.logger.With("component", "demo"))
	if err != nil {
		s.logger.Error("demo traffic not started", "err", err)
		return
	}
	dctx, cancel := context.WithCancel(ctx)
	s.stopDemo = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := g.Run(dctx); err != nil {
			s.logger.Error("demo traffic stopped", "err", err)
		}
	}()
	s.logger.Info("demo traffic started: Istio Bookinfo", "rate", cfg.Rate, "als", cfg.ALSAddr, "zipkin", cfg.ZipkinURL)
}

// stopBackground stops it before the receivers shut down.
func (s *Server) stopBackground() {
	if s.stopDemo != nil {
		s.stopDemo()
	}
}

// loopback turns a bound address into one a local client can dial.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func buildInfo() promapi.BuildInfo {
	// Grafana reads the version as a Prometheus version; leaving it empty
	// reports the linked PromQL engine's version instead.
	bi := promapi.BuildInfo{Branch: "main"}
	if info, ok := debug.ReadBuildInfo(); ok {
		bi.GoVersion = info.GoVersion
		if info.Main.Version != "" && info.Main.Version != "(devel)" {
			bi.Version = info.Main.Version
		}
		for _, st := range info.Settings {
			switch st.Key {
			case "vcs.revision":
				bi.Revision = st.Value
			case "vcs.time":
				bi.BuildDate = st.Value
			}
		}
	}
	return bi
}

// Version is the module version the binary was built from.
func Version() string {
	bi := buildInfo()
	if bi.Version == "" {
		bi.Version = "dev"
	}
	if bi.Revision != "" {
		return bi.Version + " (" + bi.Revision + ")"
	}
	return bi.Version
}
