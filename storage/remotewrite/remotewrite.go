// Package remotewrite sends every sample meshlens stores to Prometheus
// remote-write receivers (Prometheus, Mimir, VictoriaMetrics, Thanos
// receive). It is Prometheus's own remote-write client: queues tail the
// embedded TSDB's write-ahead log, so a sample is sent once it is durable
// locally, and a receiver that is down or slow is retried with backoff
// without holding samples in memory or losing them.
package remotewrite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
)

// Target is one remote-write receiver.
type Target struct {
	// URL is the receiver's endpoint, e.g. http://prometheus:9090/api/v1/write.
	URL string `yaml:"url"`
	// Name labels the queue's self-metrics; defaults to a hash of the config.
	Name string `yaml:"name"`
	// Timeout bounds one request.
	Timeout time.Duration `yaml:"timeout"`
	// Headers are added to every request (X-Scope-OrgID for Mimir, ...).
	Headers map[string]string `yaml:"headers"`
	// BearerTokenFile authenticates the requests.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// MaxShards bounds the concurrent senders; Capacity the samples each
	// holds. Together they bound memory.
	MaxShards int `yaml:"max_shards"`
	Capacity  int `yaml:"capacity"`
}

// Config lists the receivers and the labels added to every series sent.
type Config struct {
	Targets []Target `yaml:"targets"`
	// ExternalLabels are added to every series sent; scaled-out collectors
	// set a "collector" label here so their series stay apart.
	ExternalLabels map[string]string `yaml:"external_labels"`
}

// Validate reports each unusable target by index.
func (c Config) Validate() error {
	var errs []error
	for i, t := range c.Targets {
		u, err := url.Parse(t.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("storage.remote_write.targets[%d].url: %q is not an http(s) URL", i, t.URL))
		}
		if t.Timeout < 0 || t.MaxShards < 0 || t.Capacity < 0 {
			errs = append(errs, fmt.Errorf("storage.remote_write.targets[%d]: timeout, max_shards and capacity must not be negative", i))
		}
	}
	for k := range c.ExternalLabels {
		if !model.LabelName(k).IsValidLegacy() {
			errs = append(errs, fmt.Errorf("storage.remote_write.external_labels: %q is not a valid label name", k))
		}
	}
	return errors.Join(errs...)
}

// Writer is the remote-write side of storage. Its Appender only records
// timestamps; the samples themselves are read back from the TSDB's WAL.
type Writer struct {
	rws *remote.WriteStorage
}

// New starts one queue per target, tailing the WAL under tsdbDir.
func New(cfg Config, tsdbDir string, logger *slog.Logger, reg prometheus.Registerer) (*Writer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pc := &promconfig.Config{}
	var ext []string
	for k, v := range cfg.ExternalLabels {
		ext = append(ext, k, v)
	}
	pc.GlobalConfig.ExternalLabels = labels.FromStrings(ext...)
	for _, t := range cfg.Targets {
		u, _ := url.Parse(t.URL)
		rw := promconfig.DefaultRemoteWriteConfig
		rw.URL = &commoncfg.URL{URL: u}
		rw.Name = t.Name
		rw.Headers = t.Headers
		if t.Timeout > 0 {
			rw.RemoteTimeout = model.Duration(t.Timeout)
		}
		if t.MaxShards > 0 {
			rw.QueueConfig.MaxShards = t.MaxShards
		}
		if t.Capacity > 0 {
			rw.QueueConfig.Capacity = t.Capacity
		}
		// Metadata comes from scrapes, which meshlens has none of.
		rw.MetadataConfig.Send = false
		rw.HTTPClientConfig = commoncfg.DefaultHTTPClientConfig
		if t.BearerTokenFile != "" {
			rw.HTTPClientConfig.Authorization = &commoncfg.Authorization{Type: "Bearer", CredentialsFile: t.BearerTokenFile}
		}
		rwc := rw
		pc.RemoteWriteConfigs = append(pc.RemoteWriteConfigs, &rwc)
	}
	rws := remote.NewWriteStorage(logger.With("component", "remote_write"), reg, tsdbDir, time.Minute, nil, false)
	if err := rws.ApplyConfig(pc); err != nil {
		_ = rws.Close()
		return nil, fmt.Errorf("remote write: %w", err)
	}
	return &Writer{rws: rws}, nil
}

// Appendable is what a fan-out storage writes to beside the TSDB.
func (w *Writer) Appendable() storage.Appendable { return w.rws }

// Close flushes what the queues can send within their deadline and stops them.
func (w *Writer) Close() error { return w.rws.Close() }

// Tee returns an Appendable that writes to the local store and records the
// same samples' timestamps with the remote writer, which needs them to know
// how far behind its queues are. The local store is committed first: a
// sample is only ever sent after it is durable locally.
func (w *Writer) Tee(local storage.Appendable) storage.Appendable {
	return teeAppendable{local: local, remote: w.rws, notify: w.rws.Notify}
}

type teeAppendable struct {
	local, remote storage.Appendable
	notify        func()
}

func (t teeAppendable) Appender(ctx context.Context) storage.Appender {
	return &teeAppender{Appender: t.local.Appender(ctx), remote: t.remote.Appender(ctx), notify: t.notify}
}

// teeAppender appends to the local appender; the remote appender only
// tracks the highest timestamp.
type teeAppender struct {
	storage.Appender
	remote storage.Appender
	// notify wakes the WAL watchers: without it they only look for new
	// segments data on their own polling interval (15 s), so a collector's
	// samples would reach the remote store up to that much later.
	notify func()
}

func (a *teeAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	ref, err := a.Appender.Append(ref, l, t, v)
	if err != nil {
		return ref, err
	}
	_, _ = a.remote.Append(0, l, t, v)
	return ref, nil
}

func (a *teeAppender) Commit() error {
	if err := a.Appender.Commit(); err != nil {
		_ = a.remote.Rollback()
		return err
	}
	err := a.remote.Commit()
	if a.notify != nil {
		a.notify()
	}
	return err
}

func (a *teeAppender) Rollback() error {
	_ = a.remote.Rollback()
	return a.Appender.Rollback()
}
