package server

import (
	"context"
	"errors"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshlens/meshlens/processors/recommend/xdspush"
	"github.com/meshlens/meshlens/query/recommendapi"
	"github.com/meshlens/meshlens/server/security"
)

// XDSPushConfig serves the recommended local rate limits to Envoy over xDS
// (ECDS resources on an ADS / ECDS gRPC listener; docs/recommendations.md).
// Off by default, and dry-run until dry_run is turned off.
type XDSPushConfig struct {
	Enabled bool `yaml:"enabled"`
	// Listen is the address sidecars' config_discovery connects to.
	Listen string `yaml:"listen"`
	// DryRun (the default) computes and records what would be served,
	// shown at /api/meshlens/v1/recommendations/xds, and serves nothing.
	DryRun bool `yaml:"dry_run"`
	// TLS turns on TLS (and mutual TLS) for the xDS listener.
	TLS security.TLSConfig `yaml:"tls"`
}

// xdsPushPath is the read-only status (and dry-run) endpoint.
const xdsPushPath = recommendapi.Base + "/xds"

// validate names what is wrong with the xds_push block of r; listeners
// are the other listener addresses by config path, which it must not share.
func (r RecommendConfig) validateXDSPush(listeners map[string]string) error {
	const name = "processors.recommendations.xds_push"
	x := r.XDSPush
	var errs []error
	if err := x.TLS.Validate(name + ".tls"); err != nil {
		errs = append(errs, err)
	}
	if !x.Enabled {
		return errors.Join(errs...)
	}
	if !r.Enabled {
		errs = append(errs, errors.New(name+".enabled: needs processors.recommendations.enabled: true (the limits come from the recommendation engine)"))
	}
	if x.Listen == "" {
		return errors.Join(append(errs, errors.New(name+".listen: must be host:port when xds_push is enabled, e.g. 127.0.0.1:18000"))...)
	}
	host, port, err := net.SplitHostPort(x.Listen)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("%s.listen: %q is not host:port (%v)", name, x.Listen, err))...)
	}
	if port != "0" {
		for other, addr := range listeners {
			if oh, op, err := net.SplitHostPort(addr); err == nil && op == port && (oh == host || oh == "" || host == "" || oh == "0.0.0.0" || host == "0.0.0.0") {
				errs = append(errs, fmt.Errorf("%s.listen: %s overlaps %s (%s); give xDS a port of its own", name, x.Listen, other, addr))
			}
		}
	}
	return errors.Join(errs...)
}

// buildXDSPush creates the pusher when xds_push is on and the engine runs.
func (s *Server) buildXDSPush() error {
	x := s.cfg.Processors.Recommend.XDSPush
	if !x.Enabled || s.recommend == nil {
		return nil
	}
	cfg := xdspush.Config{DryRun: x.DryRun}
	if x.TLS.Enabled() {
		r, err := security.NewReloader(x.TLS, []string{"h2"}, s.logger.With("listener", "xds"))
		if err != nil {
			return fmt.Errorf("processors.recommendations.xds_push.tls: %w", err)
		}
		cfg.ServerOptions = append(cfg.ServerOptions, grpc.Creds(credentials.NewTLS(r.TLSConfig())))
	}
	s.xds = xdspush.New(cfg, s.recommend, s.logger.With("component", "xdspush"))
	return nil
}

// startXDSPush binds the xDS listener and serves it until Shutdown cancels
// ctx, which also closes the listener.
func (s *Server) startXDSPush(ctx context.Context) error {
	if s.xds == nil {
		return nil
	}
	x := s.cfg.Processors.Recommend.XDSPush
	ln, err := net.Listen("tcp", x.Listen)
	if err != nil {
		return fmt.Errorf("processors.recommendations.xds_push.listen: bind %s: %w", x.Listen, err)
	}
	what := "envoy xds: local rate limits over ecds"
	if s.xds.DryRun() {
		what += ", dry run (nothing served; see " + xdsPushPath + ")"
	}
	if x.TLS.Enabled() {
		what += ", " + tlsMode(x.TLS)
	}
	s.listeners = append(s.listeners, boundListener{proto: "grpc", name: "xds", what: what, ln: ln})
	s.logger.Info(fmt.Sprintf("listening xds=%s (grpc: %s)", ln.Addr(), what))
	s.goBackground(func() {
		if err := s.xds.Serve(ctx, ln); err != nil {
			s.logger.Error("xds push stopped", "err", err)
		}
	})
	return nil
}
