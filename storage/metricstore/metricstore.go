// Package metricstore is meshlens's embedded metric storage: a Prometheus
// TSDB (head block plus write-ahead log, compacted into blocks) opened from a
// directory, with retention, and helpers the aggregators need at start-up.
package metricstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/meshlens/meshlens/storage/diskguard"
)

// Config configures the embedded TSDB.
type Config struct {
	// Path is the data directory; it is created if missing.
	Path string `yaml:"path"`
	// Retention is how long raw samples are kept.
	Retention time.Duration `yaml:"retention"`
	// MaxBytes caps the size of the persisted blocks (0 = no cap).
	MaxBytes int64 `yaml:"max_bytes"`
	// BlockDuration is the time range of the head block and of the
	// smallest persisted block (0 = the TSDB's default, 2h).
	BlockDuration time.Duration `yaml:"block_duration"`
	// MinFreeBytes: a commit is refused while the file system has less
	// free space (0 = off); see Store.Appender.
	MinFreeBytes int64 `yaml:"min_free_bytes"`
}

// Validate reports a configuration a person can fix.
func (c Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("storage.metrics.path: must name a directory"))
	}
	if c.Retention < time.Hour {
		errs = append(errs, fmt.Errorf("storage.metrics.retention: %s is shorter than the 1h minimum", c.Retention))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, errors.New("storage.metrics.max_bytes: must not be negative"))
	}
	if c.BlockDuration != 0 && (c.BlockDuration < time.Minute || c.BlockDuration > c.Retention || c.BlockDuration%time.Minute != 0) {
		errs = append(errs, fmt.Errorf("storage.metrics.block_duration: %s must be whole minutes, at least 1m and at most the retention (%s); the default is 2h", c.BlockDuration, c.Retention))
	}
	return errors.Join(errs...)
}

// Store is the embedded TSDB. It is a storage.Appendable and a
// storage.Queryable, so the PromQL engine and every writer use it directly.
type Store struct {
	*tsdb.DB
	guard diskguard.Guard
}

// Appender returns the TSDB's appender, or, while free space is below
// Config.MinFreeBytes, an appender that refuses every sample with an error
// wrapping diskguard.ErrLowDisk and writes nothing.
//
// This guards the WAL, not the disk: when a WAL write fails with ENOSPC
// half-way through a record that spans pages, the TSDB's page keeps the
// record's first fragment and the next successful write puts a new record
// after it; at the next start-up, replay reports corruption there and
// truncates the WAL, dropping every sample committed after the disk filled
// up (Prometheus v0.316 tsdb/wlog; e2e/diskfull_test.go). A failed Commit
// rolls back, and Rollback itself logs the new series to the WAL, so the
// check must come before the first Append: an appender that never
// appended neither commits nor rolls back anything.
func (s *Store) Appender(ctx context.Context) storage.Appender {
	if err := s.guard.Check(); err != nil {
		return refusingAppender{err: fmt.Errorf("metrics not stored: %w", err)}
	}
	return s.DB.Appender(ctx)
}

// refusingAppender refuses everything with err; Commit and Rollback have
// nothing to do.
type refusingAppender struct{ err error }

var _ storage.Appender = refusingAppender{}

func (a refusingAppender) Append(storage.SeriesRef, labels.Labels, int64, float64) (storage.SeriesRef, error) {
	return 0, a.err
}
func (a refusingAppender) AppendHistogram(storage.SeriesRef, labels.Labels, int64, *histogram.Histogram, *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return 0, a.err
}
func (a refusingAppender) AppendExemplar(storage.SeriesRef, labels.Labels, exemplar.Exemplar) (storage.SeriesRef, error) {
	return 0, a.err
}
func (a refusingAppender) UpdateMetadata(storage.SeriesRef, labels.Labels, metadata.Metadata) (storage.SeriesRef, error) {
	return 0, a.err
}
func (a refusingAppender) AppendSTZeroSample(storage.SeriesRef, labels.Labels, int64, int64) (storage.SeriesRef, error) {
	return 0, a.err
}
func (a refusingAppender) AppendHistogramSTZeroSample(storage.SeriesRef, labels.Labels, int64, int64, *histogram.Histogram, *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return 0, a.err
}
func (a refusingAppender) SetOptions(*storage.AppendOptions) {}
func (a refusingAppender) Commit() error                     { return a.err }
func (a refusingAppender) Rollback() error                   { return nil }

// Open opens (or creates) the TSDB at cfg.Path, replaying its WAL.
func Open(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Store, error) {
	if err := os.MkdirAll(cfg.Path, 0o755); err != nil {
		return nil, fmt.Errorf("create metrics directory: %w", err)
	}
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = cfg.Retention.Milliseconds()
	opts.MaxBytes = cfg.MaxBytes
	if cfg.BlockDuration > 0 {
		// Blocks keep one size, as with the TSDB's defaults (2h and 2h).
		opts.MinBlockDuration = cfg.BlockDuration.Milliseconds()
		opts.MaxBlockDuration = opts.MinBlockDuration
	}
	// Late samples arrive when a proxy's clock runs behind or a flush
	// races a restart; accept them for a short while instead of erroring.
	opts.OutOfOrderTimeWindow = (10 * time.Minute).Milliseconds()
	db, err := tsdb.Open(cfg.Path, logger.With("component", "tsdb"), reg, opts, nil)
	if err != nil {
		return nil, fmt.Errorf("open TSDB at %s: %w", cfg.Path, err)
	}
	return &Store{DB: db, guard: diskguard.Guard{Path: cfg.Path, MinFreeBytes: uint64(max(0, cfg.MinFreeBytes))}}, nil
}

// LastValues returns, for every series whose metric name matches the regular
// expression nameRE, the newest float sample written within lookback of now,
// keyed by the hash of the series' labels. Aggregators use it at start-up so
// that their counters continue where they stopped instead of resetting.
func (s *Store) LastValues(ctx context.Context, nameRE string, lookback time.Duration) (map[uint64]float64, error) {
	maxt := time.Now().Add(time.Minute).UnixMilli()
	q, err := s.Querier(maxt-lookback.Milliseconds(), maxt)
	if err != nil {
		return nil, fmt.Errorf("open querier: %w", err)
	}
	defer q.Close()
	m, err := labels.NewMatcher(labels.MatchRegexp, labels.MetricName, nameRE)
	if err != nil {
		return nil, fmt.Errorf("metric name pattern %q: %w", nameRE, err)
	}
	out := map[uint64]float64{}
	set := q.Select(ctx, false, nil, m)
	var it chunkenc.Iterator
	for set.Next() {
		series := set.At()
		it = series.Iterator(it)
		last, ok := math.NaN(), false
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			if vt != chunkenc.ValFloat {
				continue
			}
			_, v := it.At()
			if value.IsStaleNaN(v) {
				continue
			}
			last, ok = v, true
		}
		if it.Err() != nil {
			return nil, fmt.Errorf("read series %s: %w", series.Labels(), it.Err())
		}
		if ok {
			out[series.Labels().Hash()] = last
		}
	}
	if err := set.Err(); err != nil {
		return nil, fmt.Errorf("select %s: %w", nameRE, err)
	}
	return out, nil
}

var _ storage.Queryable = (*Store)(nil)
var _ storage.Appendable = (*Store)(nil)
