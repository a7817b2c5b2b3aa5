// Package downsample keeps coarser copies of the embedded TSDB's series for
// longer than the raw samples (by default 1-minute samples for 7 days,
// 1-hour for 30 days, 1-day for a year) and serves all of them behind one
// storage.Queryable, so PromQL over a long range reads whatever resolution
// still covers each part of it.
//
// Every series meshlens writes is a counter or a histogram bucket (also a
// counter), so a level keeps, per series and per window of its resolution,
// the last raw sample of the window with its own timestamp. The increase
// between two kept samples is then exactly the raw increase, and rate() over
// a downsampled range equals the raw answer except across a counter reset
// inside a window. Gauges (Envoy's own stats) keep their last value.
package downsample

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// Level is one resolution kept for Retention.
type Level struct {
	Resolution time.Duration `yaml:"resolution"`
	Retention  time.Duration `yaml:"retention"`
}

// Config lists the levels, finest first.
type Config struct {
	Enabled bool    `yaml:"enabled"`
	Levels  []Level `yaml:"levels"`
	// Delay leaves the newest windows alone until late samples are in.
	Delay time.Duration `yaml:"delay"`
}

// DefaultConfig keeps 1m for 7d, 1h for 30d and 1d for a year.
func DefaultConfig() Config {
	return Config{
		Enabled: true,
		Levels: []Level{
			{Resolution: time.Minute, Retention: 7 * 24 * time.Hour},
			{Resolution: time.Hour, Retention: 30 * 24 * time.Hour},
			{Resolution: 24 * time.Hour, Retention: 365 * 24 * time.Hour},
		},
		Delay: 2 * time.Minute,
	}
}

// Validate checks that levels get coarser and are kept longer.
func (c Config) Validate() error {
	var errs []error
	for i, l := range c.Levels {
		if l.Resolution < time.Second {
			errs = append(errs, fmt.Errorf("storage.metrics.downsample.levels[%d].resolution: %s is below 1s", i, l.Resolution))
		}
		if l.Retention < l.Resolution {
			errs = append(errs, fmt.Errorf("storage.metrics.downsample.levels[%d].retention: %s is shorter than its resolution", i, l.Retention))
		}
		if i > 0 && (l.Resolution <= c.Levels[i-1].Resolution || l.Retention < c.Levels[i-1].Retention) {
			errs = append(errs, fmt.Errorf("storage.metrics.downsample.levels[%d]: each level must be coarser and kept at least as long as the one before", i))
		}
	}
	if c.Delay < 0 {
		errs = append(errs, errors.New("storage.metrics.downsample.delay: must not be negative"))
	}
	return errors.Join(errs...)
}

type level struct {
	Level
	db   *tsdb.DB
	dir  string
	done int64 // windows ending at or before this (ms) are written
}

// Store is the raw TSDB plus its downsampled levels.
type Store struct {
	cfg          Config
	raw          storage.Queryable
	rawRetention time.Duration
	logger       *slog.Logger
	now          func() time.Time

	mu     sync.RWMutex // guards levels[i].done
	levels []*level

	written prometheus.Counter
}

// Open opens one TSDB per level under dir.
func Open(cfg Config, dir string, raw storage.Queryable, rawRetention time.Duration, logger *slog.Logger, reg prometheus.Registerer) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, raw: raw, rawRetention: rawRetention, logger: logger, now: time.Now,
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_downsample_samples_written_total", Help: "Samples written to downsampled levels."}),
	}
	if reg != nil {
		reg.MustRegister(s.written)
	}
	for _, l := range cfg.Levels {
		ldir := filepath.Join(dir, "res-"+l.Resolution.String())
		opts := tsdb.DefaultOptions()
		opts.RetentionDuration = l.Retention.Milliseconds()
		// A kept sample carries its raw timestamp, which may lie well
		// before the head's newest sample.
		opts.OutOfOrderTimeWindow = (2 * l.Resolution).Milliseconds()
		if opts.OutOfOrderTimeWindow < time.Hour.Milliseconds() {
			opts.OutOfOrderTimeWindow = time.Hour.Milliseconds()
		}
		// Coarse levels hold few samples: bigger blocks keep the file count down.
		if l.Resolution >= time.Hour {
			opts.MaxBlockDuration = (31 * 24 * time.Hour).Milliseconds()
		}
		db, err := tsdb.Open(ldir, logger.With("component", "tsdb-"+l.Resolution.String()), nil, opts, nil)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("open downsample level %s: %w", l.Resolution, err)
		}
		lv := &level{Level: l, db: db, dir: ldir}
		lv.done = readProgress(ldir)
		s.levels = append(s.levels, lv)
	}
	return s, nil
}

// Close closes the level TSDBs (not the raw one).
func (s *Store) Close() error {
	var errs []error
	for _, l := range s.levels {
		if l.db != nil {
			errs = append(errs, l.db.Close())
		}
	}
	return errors.Join(errs...)
}

func readProgress(dir string) int64 {
	b, err := os.ReadFile(filepath.Join(dir, "progress"))
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return v
}

func writeProgress(dir string, v int64) error {
	tmp := filepath.Join(dir, "progress.tmp")
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(v, 10)+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "progress"))
}

// Run downsamples every minute until ctx ends.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if err := s.Compact(ctx); err != nil && ctx.Err() == nil {
			s.logger.Error("downsample", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// maxWindowsPerPass bounds one pass so a long backlog is caught up in steps.
const maxWindowsPerPass = 24 * 60

// Compact writes every window that closed more than Delay ago. Each level
// reads the level below it (the raw TSDB for the first), so the work per
// level is proportional to the samples the finer level keeps.
func (s *Store) Compact(ctx context.Context) error {
	now := s.now().Add(-s.cfg.Delay).UnixMilli()
	var src storage.Queryable = s.raw
	srcDone := now
	for _, l := range s.levels {
		res := l.Resolution.Milliseconds()
		s.mu.RLock()
		from := l.done
		s.mu.RUnlock()
		end := min(now, srcDone) / res * res
		if from == 0 || from < end-l.Retention.Milliseconds() {
			from = max(end-l.Retention.Milliseconds(), 0) / res * res
			// Nothing older than the source's oldest sample needs a
			// pass: a fresh store would otherwise spend one pass per
			// day of retention (7 minutes for the 1-minute level)
			// scanning empty days before it wrote its first window.
			if st, ok := src.(interface{ StartTime() (int64, error) }); ok {
				if oldest, err := st.StartTime(); err == nil && oldest > from {
					from = min(oldest, end) / res * res
				}
			}
		}
		if end-from > maxWindowsPerPass*res {
			end = from + maxWindowsPerPass*res
		}
		if end > from {
			n, err := s.downsample(ctx, src, l, from, end)
			if err != nil {
				return fmt.Errorf("level %s [%d, %d): %w", l.Resolution, from, end, err)
			}
			if err := writeProgress(l.dir, end); err != nil {
				return fmt.Errorf("level %s progress: %w", l.Resolution, err)
			}
			s.mu.Lock()
			l.done = end
			s.mu.Unlock()
			s.written.Add(float64(n))
		}
		src = l.db
		s.mu.RLock()
		srcDone = l.done
		s.mu.RUnlock()
	}
	return nil
}

// downsample keeps the last sample of every series in each window of l in
// [from, end) and appends it to l.
func (s *Store) downsample(ctx context.Context, src storage.Queryable, l *level, from, end int64) (int, error) {
	q, err := src.Querier(from, end-1)
	if err != nil {
		return 0, err
	}
	defer q.Close()
	res := l.Resolution.Milliseconds()
	set := q.Select(ctx, false, &storage.SelectHints{Start: from, End: end - 1, Func: "downsample"},
		labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+"))
	app := l.db.Appender(ctx)
	n, pending := 0, 0
	var it chunkenc.Iterator
	for set.Next() {
		series := set.At()
		lset := series.Labels()
		it = series.Iterator(it)
		var ref storage.SeriesRef
		lastT, lastV, win := int64(math.MinInt64), 0.0, int64(math.MinInt64)
		flush := func() error {
			if lastT == math.MinInt64 {
				return nil
			}
			r, err := app.Append(ref, lset, lastT, lastV)
			if err != nil && !errors.Is(err, storage.ErrDuplicateSampleForTimestamp) {
				return fmt.Errorf("append %s: %w", lset, err)
			}
			ref = r
			n++
			pending++
			return nil
		}
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			if vt != chunkenc.ValFloat {
				continue
			}
			t, v := it.At()
			if w := t / res; w != win {
				if err := flush(); err != nil {
					_ = app.Rollback()
					return n, err
				}
				win = w
			}
			lastT, lastV = t, v
		}
		if err := flush(); err != nil {
			_ = app.Rollback()
			return n, err
		}
		if it.Err() != nil {
			_ = app.Rollback()
			return n, it.Err()
		}
		// Bound the appender's memory on big backlogs.
		if pending > 100_000 {
			if err := app.Commit(); err != nil {
				return n, err
			}
			app = l.db.Appender(ctx)
			pending = 0
		}
	}
	if err := set.Err(); err != nil {
		_ = app.Rollback()
		return n, err
	}
	return n, app.Commit()
}

// Querier serves [mint, maxt] from the finest data that covers each part:
// raw samples within the raw retention, then each level back to its own
// retention. The parts are disjoint in time, so merging them chains each
// series' samples.
func (s *Store) Querier(mint, maxt int64) (storage.Querier, error) {
	now := s.now().UnixMilli()
	var qs []storage.Querier
	closeAll := func() {
		for _, q := range qs {
			_ = q.Close()
		}
	}
	// Everything newer than `upto` is served by finer data already.
	rawFrom := now - s.rawRetention.Milliseconds()
	if maxt >= rawFrom || len(s.levels) == 0 {
		q, err := s.raw.Querier(max(mint, rawFrom), maxt)
		if err != nil {
			return nil, err
		}
		qs = append(qs, q)
	}
	upto := rawFrom - 1
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, l := range s.levels {
		if upto < mint {
			break
		}
		from := max(mint, now-l.Retention.Milliseconds())
		to := min(maxt, upto, l.done-1)
		if to >= from {
			q, err := l.db.Querier(from, to)
			if err != nil {
				closeAll()
				return nil, err
			}
			qs = append(qs, q)
		}
		upto = min(upto, from-1)
	}
	if len(qs) == 1 {
		return qs[0], nil
	}
	if len(qs) == 0 {
		return storage.NoopQuerier(), nil
	}
	return storage.NewMergeQuerier(qs, nil, storage.ChainedSeriesMerge), nil
}

var _ storage.Queryable = (*Store)(nil)
