package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshlens/meshlens/processors/recommend/xdspush"
	"github.com/meshlens/meshlens/server/security"
	"github.com/meshlens/meshlens/server/security/certtest"
)

func TestXDSPushConfig(t *testing.T) {
	const p = "--processors.recommendations."
	tests := []struct {
		name string
		args []string
		env  []string
		// want are the strings the error must contain; none: valid.
		want  []string
		check func(t *testing.T, c XDSPushConfig)
	}{
		{name: "off by default, dry run when turned on", check: func(t *testing.T, c XDSPushConfig) {
			if c.Enabled || !c.DryRun || c.Listen != "127.0.0.1:18000" {
				t.Fatalf("defaults %+v", c)
			}
		}},
		{name: "enabled by flag", args: []string{p + "xds_push.enabled=true"}, check: func(t *testing.T, c XDSPushConfig) {
			if !c.Enabled || !c.DryRun {
				t.Fatalf("%+v", c)
			}
		}},
		{name: "dry run off by env", env: []string{"MESHLENS_PROCESSORS_RECOMMENDATIONS_XDS_PUSH_ENABLED=true", "MESHLENS_PROCESSORS_RECOMMENDATIONS_XDS_PUSH_DRY_RUN=false"},
			check: func(t *testing.T, c XDSPushConfig) {
				if !c.Enabled || c.DryRun {
					t.Fatalf("%+v", c)
				}
			}},
		{name: "no listen", args: []string{p + "xds_push.enabled=true", p + "xds_push.listen="}, want: []string{"processors.recommendations.xds_push.listen: must be host:port"}},
		{name: "listen not host:port", args: []string{p + "xds_push.enabled=true", p + "xds_push.listen=18000"}, want: []string{"xds_push.listen: \"18000\" is not host:port"}},
		{name: "off: a bad listen is not checked", args: []string{p + "xds_push.listen=18000"}},
		{name: "needs the engine", args: []string{p + "xds_push.enabled=true", p + "enabled=false"}, want: []string{"xds_push.enabled: needs processors.recommendations.enabled"}},
		{name: "port of another listener", args: []string{p + "xds_push.enabled=true", p + "xds_push.listen=127.0.0.1:11800"}, want: []string{"xds_push.listen: 127.0.0.1:11800 overlaps listen.grpc"}},
		{name: "tls half set", args: []string{p + "xds_push.enabled=true", p + "xds_push.tls.cert_file=/nonexistent/cert.pem"},
			want: []string{"processors.recommendations.xds_push.tls: cert_file and key_file must be set together", "xds_push.tls.cert_file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := LoadConfig(tc.args, tc.env, io.Discard)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if tc.check != nil {
					tc.check(t, cfg.Processors.Recommend.XDSPush)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// startServer runs a whole server on loopback ports until the test ends.
func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Storage.Path = t.TempDir()
	for _, a := range []*string{&cfg.Listen.HTTP, &cfg.Listen.GRPC, &cfg.Listen.Zipkin, &cfg.Listen.OTLPGRPC, &cfg.Listen.OTLPHTTP} {
		*a = "127.0.0.1:0"
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := New(context.Background(), cfg, Flags{Mode: ModeAll}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		srv.closeAll(context.Background())
		t.Fatal(err)
	}
	return srv
}

func xdsStatus(t *testing.T, srv *Server) map[string]any {
	t.Helper()
	rec := httptest.NewRecorder()
	srv.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, xdsPushPath, nil))
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", xdsPushPath, rec.Code, rec.Body)
	}
	return m
}

func TestXDSPushLifecycle(t *testing.T) {
	t.Run("off by default: no listener", func(t *testing.T) {
		srv := startServer(t, DefaultConfig())
		defer srv.Shutdown(context.Background())
		if a := srv.Addr("xds"); a != "" || srv.xds != nil {
			t.Fatalf("xds listener %q with xds_push off", a)
		}
		if m := xdsStatus(t, srv); m["enabled"] != false {
			t.Fatalf("status %v", m)
		}
	})
	t.Run("on: serves, closes on shutdown", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Processors.Recommend.XDSPush = XDSPushConfig{Enabled: true, Listen: "127.0.0.1:0", DryRun: false}
		srv := startServer(t, cfg)
		addr := srv.Addr("xds")
		if addr == "" {
			t.Fatal("no xds listener")
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// No traffic yet, so no limit: the node gets the pass-through config.
		if err := s.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "n1", Cluster: "reviews.default"},
			TypeUrl: xdspush.TypeURL, ResourceNames: []string{xdspush.SharedResourceName}}); err != nil {
			t.Fatal(err)
		}
		r, err := s.Recv()
		if err != nil || len(r.GetResources()) != 1 {
			t.Fatalf("response %v, %v", r, err)
		}
		if m := xdsStatus(t, srv); m["enabled"] != true || m["serving"] != true || len(m["nodes"].([]any)) != 1 {
			t.Fatalf("status %v", m)
		}
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Fatal(err)
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("xds listener %s still open after shutdown", addr)
		}
	})
}

// selfSigned writes a certificate for 127.0.0.1 and its key into dir and
// returns them with a pool that trusts them.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	ca := certtest.NewCA(t, "meshlens-xds-ca")
	c, k := ca.Issue(t, "meshlens-xds", "")
	certFile, keyFile = certtest.WriteFiles(t, dir, c, k)
	return certFile, keyFile, ca.Pool()
}

// xdsAsk opens an ADS stream to addr and asks for the shared rate-limit
// config; it returns the error of the first step that fails.
func xdsAsk(addr string, creds credentials.TransportCredentials) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "n1", Cluster: "reviews.default"},
		TypeUrl: xdspush.TypeURL, ResourceNames: []string{xdspush.SharedResourceName}}); err != nil {
		return err
	}
	r, err := s.Recv()
	if err != nil {
		return err
	}
	if len(r.GetResources()) != 1 {
		return fmt.Errorf("%d resources, want the shared config", len(r.GetResources()))
	}
	return nil
}

// keyPair is a certificate from ca for cn as a tls.Certificate.
func keyPair(t *testing.T, ca *certtest.CA, cn string) tls.Certificate {
	t.Helper()
	kp, err := tls.X509KeyPair(ca.Issue(t, cn, ""))
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// TestXDSPushMutualTLS configures client certificates on the xDS listener
// as on the other listeners (client_ca_file, require_client_cert) and
// checks who gets the rate-limit config.
func TestXDSPushMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, other := certtest.NewCA(t, "mesh-ca"), certtest.NewCA(t, "other-ca")
	c, k := ca.Issue(t, "meshlens-xds", "")
	certFile, keyFile := certtest.WriteFiles(t, dir, c, k)
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	sidecar, stranger := keyPair(t, ca, "sidecar"), keyPair(t, other, "stranger")
	// The client sends its certificate whatever CAs the server names: Go's
	// client would otherwise withhold one from another CA, and the server's
	// check of a foreign certificate would go untested.
	client := func(certs ...tls.Certificate) credentials.TransportCredentials {
		return credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if len(certs) == 0 {
					return &tls.Certificate{}, nil
				}
				return &certs[0], nil
			}})
	}
	for _, tc := range []struct {
		name    string
		require bool
		// served says, for no certificate / the mesh CA's / another CA's,
		// whether the client gets the config.
		noCert, meshCert, otherCert bool
	}{
		{name: "require_client_cert", require: true, meshCert: true},
		{name: "client_ca_file only: a certificate is checked if given", noCert: true, meshCert: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Processors.Recommend.XDSPush = XDSPushConfig{Enabled: true, Listen: "127.0.0.1:0", DryRun: false,
				TLS: security.TLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile, RequireClientCert: tc.require}}
			srv := startServer(t, cfg)
			defer srv.Shutdown(context.Background())
			addr := srv.Addr("xds")
			for _, c := range []struct {
				who   string
				creds credentials.TransportCredentials
				want  bool
			}{
				{"a client without a certificate", client(), tc.noCert},
				{"a client with a certificate of the mesh CA", client(sidecar), tc.meshCert},
				{"a client with a certificate of another CA", client(stranger), tc.otherCert},
				{"a plain-text client", insecure.NewCredentials(), false},
			} {
				err := xdsAsk(addr, c.creds)
				switch {
				case c.want && err != nil:
					t.Errorf("%s was refused: %v", c.who, err)
				case !c.want && err == nil:
					t.Errorf("%s was served", c.who)
				case err != nil:
					t.Logf("%s refused: %v", c.who, err)
				}
			}
			// Refused clients never reach the xDS server, so only the
			// served ones appear as nodes.
			n := 0
			for _, w := range []bool{tc.noCert, tc.meshCert, tc.otherCert} {
				if w {
					n++
				}
			}
			if nodes, _ := xdsStatus(t, srv)["nodes"].([]any); len(nodes) > n {
				t.Errorf("%d nodes recorded, at most %d clients were served", len(nodes), n)
			}
		})
	}
}

func TestXDSPushTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	cfg := DefaultConfig()
	cfg.Processors.Recommend.XDSPush = XDSPushConfig{Enabled: true, Listen: "127.0.0.1:0", DryRun: false,
		TLS: security.TLSConfig{CertFile: certFile, KeyFile: keyFile}}
	srv := startServer(t, cfg)
	defer srv.Shutdown(context.Background())
	ask := func(creds credentials.TransportCredentials) error { return xdsAsk(srv.Addr("xds"), creds) }
	if err := ask(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})); err != nil {
		t.Fatalf("over TLS: %v", err)
	}
	if err := ask(insecure.NewCredentials()); err == nil {
		t.Fatal("plain-text client served by a TLS xds listener")
	}
}
