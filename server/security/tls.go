// Package security holds meshlens's transport security: TLS and mutual TLS
// per listener with certificates re-read from disk when they change, and
// the SPIFFE allow-list that decides which sidecars may send access logs.
package security

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// TLSConfig is the TLS setting of one listener. An empty CertFile leaves
// the listener in plain text.
type TLSConfig struct {
	// CertFile and KeyFile are the PEM server certificate (chain) and key.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile holds the PEM CAs that client certificates are verified
	// against. Set, a client certificate is asked for and verified when
	// presented.
	ClientCAFile string `yaml:"client_ca_file"`
	// RequireClientCert refuses clients without a valid certificate
	// (mutual TLS); it needs ClientCAFile.
	RequireClientCert bool `yaml:"require_client_cert"`
}

// Enabled reports whether the listener serves TLS.
func (c TLSConfig) Enabled() bool { return c.CertFile != "" }

// Validate names what is wrong with c; name is the config path of the
// listener's TLS block (listen.tls.grpc).
func (c TLSConfig) Validate(name string) error {
	var errs []error
	if c.Enabled() != (c.KeyFile != "") {
		errs = append(errs, fmt.Errorf("%s: cert_file and key_file must be set together", name))
	}
	if !c.Enabled() && (c.ClientCAFile != "" || c.RequireClientCert) {
		errs = append(errs, fmt.Errorf("%s: client_ca_file and require_client_cert need cert_file and key_file", name))
	}
	if c.RequireClientCert && c.ClientCAFile == "" {
		errs = append(errs, fmt.Errorf("%s: require_client_cert needs client_ca_file", name))
	}
	for field, p := range map[string]string{"cert_file": c.CertFile, "key_file": c.KeyFile, "client_ca_file": c.ClientCAFile} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("%s.%s: %w", name, field, err))
		}
	}
	return errors.Join(errs...)
}

// Reloader serves a listener's TLS configuration and re-reads the
// certificate, key and client CA files when their modification time or size
// changes (checked at most once per CheckEvery, on new connections), so
// that cert-manager or Istio rotating them needs no restart. A reload that
// fails (a half-written file) keeps the previous configuration and is
// logged; the next handshake tries again.
type Reloader struct {
	cfg        TLSConfig
	nextProtos []string
	logger     *slog.Logger
	// CheckEvery bounds how often the files are stat'ed.
	CheckEvery time.Duration

	mu        sync.Mutex
	current   *tls.Config
	stamp     string
	lastCheck time.Time
}

// NewReloader loads cfg's files once (an error here stops start-up) and
// returns the reloader. nextProtos is the ALPN list of the protocol served
// ("h2" for gRPC, "http/1.1" for HTTP).
func NewReloader(cfg TLSConfig, nextProtos []string, logger *slog.Logger) (*Reloader, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{cfg: cfg, nextProtos: nextProtos, logger: logger, CheckEvery: time.Second}
	stamp, err := r.stampFiles()
	if err != nil {
		return nil, err
	}
	c, err := r.load()
	if err != nil {
		return nil, err
	}
	r.current, r.stamp, r.lastCheck = c, stamp, time.Now()
	return r, nil
}

// TLSConfig is the configuration to give tls.NewListener or
// credentials.NewTLS: every handshake asks the reloader for the current one.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         r.nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return r.Current(), nil },
	}
}

// Current returns the configuration in force, reloading it first if the
// files changed.
func (r *Reloader) Current() *tls.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.lastCheck) < r.CheckEvery {
		return r.current
	}
	r.lastCheck = time.Now()
	stamp, err := r.stampFiles()
	if err != nil || stamp == r.stamp {
		if err != nil {
			r.logger.Warn("tls: cannot stat certificate files; keeping the loaded ones", "err", err)
		}
		return r.current
	}
	c, err := r.load()
	if err != nil {
		r.logger.Warn("tls: reload failed; keeping the loaded certificate", "err", err)
		return r.current
	}
	r.current, r.stamp = c, stamp
	r.logger.Info("tls: certificates reloaded", "cert_file", r.cfg.CertFile)
	return c
}

func (r *Reloader) stampFiles() (string, error) {
	var stamp string
	for _, p := range []string{r.cfg.CertFile, r.cfg.KeyFile, r.cfg.ClientCAFile} {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%s:%d:%d;", p, fi.ModTime().UnixNano(), fi.Size())
	}
	return stamp, nil
}

func (r *Reloader) load() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(r.cfg.CertFile, r.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load %s / %s: %w", r.cfg.CertFile, r.cfg.KeyFile, err)
	}
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   r.nextProtos,
	}
	if r.cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(r.cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client_ca_file %s holds no PEM certificate", r.cfg.ClientCAFile)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.VerifyClientCertIfGiven
		if r.cfg.RequireClientCert {
			c.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return c, nil
}
