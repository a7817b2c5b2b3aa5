package security

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/meshlens/meshlens/server/security/certtest"
)

func write(t *testing.T, path string, data []byte, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestMutualTLSAndReloadWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "mesh-ca")
	cfg := TLSConfig{
		CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
		ClientCAFile: filepath.Join(dir, "ca.crt"), RequireClientCert: true,
	}
	t0 := time.Now().Add(-time.Minute)
	c1, k1 := ca.Issue(t, "meshlens-1", "")
	write(t, cfg.CertFile, c1, t0)
	write(t, cfg.KeyFile, k1, t0)
	write(t, cfg.ClientCAFile, ca.PEM, t0)
	if err := cfg.Validate("listen.tls.http"); err != nil {
		t.Fatal(err)
	}
	r, err := NewReloader(cfg, []string{"http/1.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.CheckEvery = 0
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })}
	go func() { _ = srv.Serve(tls.NewListener(ln, r.TLSConfig())) }()
	defer srv.Close()
	url := "https://" + ln.Addr().String() + "/"

	get := func(c *tls.Config) (*http.Response, error) {
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: c, DisableKeepAlives: true}, Timeout: 5 * time.Second}
		return cl.Get(url)
	}
	// No client certificate: refused.
	if resp, err := get(ca.ClientTLS(t, nil, nil)); err == nil {
		resp.Body.Close()
		t.Fatal("a client without a certificate was served though require_client_cert is set")
	}
	// A certificate from another CA: refused.
	other := certtest.NewCA(t, "other-ca")
	oc, ok := other.Issue(t, "intruder", "")
	if resp, err := get(ca.ClientTLS(t, oc, ok)); err == nil {
		resp.Body.Close()
		t.Fatal("a client certificate from an unknown CA was accepted")
	}
	cc, ck := ca.Issue(t, "client", "spiffe://cluster.local/ns/default/sa/productpage")
	resp, err := get(ca.ClientTLS(t, cc, ck))
	if err != nil {
		t.Fatalf("mTLS client refused: %v", err)
	}
	if cn := resp.TLS.PeerCertificates[0].Subject.CommonName; cn != "meshlens-1" {
		t.Errorf("served certificate %q, want meshlens-1", cn)
	}
	resp.Body.Close()

	// Rotate the server certificate on disk: new connections get it.
	c2, k2 := ca.Issue(t, "meshlens-2", "")
	t1 := time.Now()
	write(t, cfg.CertFile, c2, t1)
	write(t, cfg.KeyFile, k2, t1)
	resp, err = get(ca.ClientTLS(t, cc, ck))
	if err != nil {
		t.Fatal(err)
	}
	if cn := resp.TLS.PeerCertificates[0].Subject.CommonName; cn != "meshlens-2" {
		t.Errorf("after rotation served %q, want meshlens-2 (no reload)", cn)
	}
	resp.Body.Close()

	// A half-written key keeps the loaded certificate in service.
	write(t, cfg.KeyFile, []byte("-----BEGIN EC PRIVATE"), time.Now().Add(time.Second))
	resp, err = get(ca.ClientTLS(t, cc, ck))
	if err != nil {
		t.Fatalf("a broken key file on disk broke serving: %v", err)
	}
	if cn := resp.TLS.PeerCertificates[0].Subject.CommonName; cn != "meshlens-2" {
		t.Errorf("after a failed reload served %q, want meshlens-2", cn)
	}
	resp.Body.Close()
}

func TestValidateNamesTheField(t *testing.T) {
	for _, c := range []struct {
		cfg  TLSConfig
		want string
	}{
		{TLSConfig{CertFile: "/nonexistent.crt"}, "cert_file and key_file"},
		{TLSConfig{RequireClientCert: true}, "need cert_file"},
		{TLSConfig{CertFile: "/nonexistent.crt", KeyFile: "/nonexistent.key", RequireClientCert: true}, "require_client_cert needs client_ca_file"},
		{TLSConfig{CertFile: "/nonexistent.crt", KeyFile: "/nonexistent.key"}, "listen.tls.grpc.cert_file"},
	} {
		err := c.cfg.Validate("listen.tls.grpc")
		if err == nil || !contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %q", c.cfg, err, c.want)
		}
	}
	if err := (TLSConfig{}).Validate("listen.tls.grpc"); err != nil {
		t.Errorf("plain text listener: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestSPIFFEAllowList(t *testing.T) {
	l, err := NewSPIFFEAllowList([]string{"spiffe://cluster.local/ns/*/sa/productpage", "spiffe://cluster.local/ns/istio-system/sa/*"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{
		"spiffe://cluster.local/ns/default/sa/productpage":         true,
		"spiffe://cluster.local/ns/istio-system/sa/ingressgateway": true,
		"spiffe://cluster.local/ns/default/sa/reviews":             false,
		"spiffe://cluster.local/ns/a/b/sa/productpage":             false, // * is one segment
		"spiffe://evil.example/ns/default/sa/productpage":          false,
	} {
		if got := l.Allowed(id); got != want {
			t.Errorf("Allowed(%s) = %v, want %v", id, got, want)
		}
	}
	if _, err := NewSPIFFEAllowList([]string{"cluster.local/ns/x"}, nil); err == nil {
		t.Error("a pattern that is not a SPIFFE ID was accepted")
	}
}

// TestSPIFFEInterceptorOverMTLS drives a real gRPC server over mutual TLS:
// the guarded method answers PERMISSION_DENIED to a sidecar whose SPIFFE ID
// is not on the list and serves one that is.
func TestSPIFFEInterceptorOverMTLS(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "mesh-ca")
	cfg := TLSConfig{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), ClientCAFile: filepath.Join(dir, "ca.crt")}
	sc, sk := ca.Issue(t, "meshlens", "")
	write(t, cfg.CertFile, sc, time.Now())
	write(t, cfg.KeyFile, sk, time.Now())
	write(t, cfg.ClientCAFile, ca.PEM, time.Now())
	r, err := NewReloader(cfg, []string{"h2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const method = "/grpc.health.v1.Health/Check"
	allow, err := NewSPIFFEAllowList([]string{"spiffe://cluster.local/ns/*/sa/productpage"}, []string{method})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(r.TLSConfig())), grpc.UnaryInterceptor(allow.UnaryInterceptor))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()

	check := func(c *tls.Config) error {
		conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(c)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	okC, okK := ca.Issue(t, "pp", "spiffe://cluster.local/ns/default/sa/productpage")
	if err := check(ca.ClientTLS(t, okC, okK)); err != nil {
		t.Errorf("allowed SPIFFE ID refused: %v", err)
	}
	badC, badK := ca.Issue(t, "rv", "spiffe://cluster.local/ns/default/sa/reviews")
	if err := check(ca.ClientTLS(t, badC, badK)); status.Code(err) != codes.PermissionDenied {
		t.Errorf("SPIFFE ID not on the list: %v, want PERMISSION_DENIED", err)
	}
	if err := check(ca.ClientTLS(t, nil, nil)); status.Code(err) != codes.PermissionDenied {
		t.Errorf("no client certificate: %v, want PERMISSION_DENIED", err)
	}
}
