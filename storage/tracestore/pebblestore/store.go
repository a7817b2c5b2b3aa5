// Package pebblestore is the embedded, durable tracestore backend on
// Pebble: spans stored as one chunk per trace and batch inside hourly time
// buckets, per-batch posting lists for service, operation and tags in the
// same buckets, retention by dropping whole buckets (TTL and disk-size cap).
package pebblestore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable/block"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
)

// Config opens a Store.
type Config struct {
	// Dir is the database directory, created when missing.
	Dir string
	// TTL is how long spans are kept, by span start time. Default 72h.
	TTL time.Duration
	// MaxDiskBytes caps the database size: when exceeded the oldest time
	// buckets are dropped. Zero means no cap.
	MaxDiskBytes int64
	// BucketWidth is the time-bucket size, the granularity of retention.
	// Default 1h.
	BucketWidth time.Duration
	// MaxLookback bounds how far back a search reaches. Default TTL.
	MaxLookback time.Duration
	// MaxSpansPerTrace caps GetTrace. Default tracestore.DefaultMaxSpansPerTrace.
	MaxSpansPerTrace int
	// MaxScan bounds the index entries one search reads. Default 2,000,000.
	MaxScan int
	// RetentionInterval is how often expired buckets are dropped. Default 1m.
	RetentionInterval time.Duration
	// CacheBytes is Pebble's block cache. Default 128 MiB. The store adds
	// the memtables' 128 MiB, which Pebble accounts against the same cache.
	CacheBytes int64
	// AutocompleteKeys are the span tag keys whose values are kept for
	// GetTagValues (Zipkin's autocompleteValues).
	AutocompleteKeys []string
	// WALSyncInterval, when positive, acknowledges a write once it is in
	// the write-ahead log file (in the kernel's page cache: it survives a
	// kill -9) and fsyncs the log in the background this often; a power
	// loss or kernel crash can lose that much of the newest spans. Zero
	// waits for an fsync before acknowledging each write (see walSyncFS).
	WALSyncInterval time.Duration
	// NoSync acknowledges writes before the WAL leaves Pebble's buffer.
	// Only for benchmarks: a kill -9 then loses acknowledged spans.
	NoSync bool
	// Logger receives retention and corruption reports. Default discards.
	Logger *slog.Logger
	// Now is the clock; default time.Now. Tests move it.
	Now func() time.Time
	// Registerer receives the store's self-metrics; nil registers none.
	Registerer prometheus.Registerer

	// compression overrides the per-level compression (benchmarks compare
	// settings); nil is zstd on every level.
	compression func() pebble.DBCompressionSettings
	// blockSize overrides the sstable block size (benchmarks); 0 is
	// defaultBlockSize.
	blockSize int
	// walSyncFile replaces the background WAL fsync (tests inject
	// failures); nil is the file's SyncData.
	walSyncFile func(vfs.File) error
}

// defaultBlockSize: larger blocks give zstd more repetition (attribute
// keys, service names) to compress, smaller ones cost less to decompress
// on a block-cache miss (a GetTrace reads one chunk of a block).
const defaultBlockSize = 32 << 10

// memTableSize is Pebble's memtable size. 8 MiB halved the memtable insert
// cost, but the extra flushes and compactions cost as much; 32 MiB costs
// the same store CPU per span as 64 MiB (BenchmarkWriteTraces, 12.5-12.7
// against 12.8-14.0 us/span) and halves what the live and recycled
// memtables hold in memory, and the recycled WAL files on disk.
const memTableSize = 32 << 20

func (c *Config) defaults() {
	if c.TTL <= 0 {
		c.TTL = tracestore.DefaultTTL
	}
	if c.BucketWidth <= 0 {
		c.BucketWidth = time.Hour
	}
	if c.MaxLookback <= 0 {
		c.MaxLookback = c.TTL
	}
	if c.MaxSpansPerTrace <= 0 {
		c.MaxSpansPerTrace = tracestore.DefaultMaxSpansPerTrace
	}
	if c.MaxScan <= 0 {
		c.MaxScan = 2_000_000
	}
	if c.RetentionInterval <= 0 {
		c.RetentionInterval = time.Minute
	}
	if c.CacheBytes <= 0 {
		c.CacheBytes = 128 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// maxMetaCache bounds the set of metadata keys known to be written.
const maxMetaCache = 1 << 20

// Store is the Pebble backend. It is safe for concurrent use.
type Store struct {
	cfg Config
	db  *pebble.DB
	wo  *pebble.WriteOptions
	// walSync fsyncs the WAL in the background when cfg.WALSyncInterval
	// is set; nil otherwise.
	walSync *walSyncer
	autoKey map[string]bool
	m       *metrics

	mu       sync.RWMutex
	buckets  map[uint32]struct{}
	closed   bool
	meta     map[string]uint32
	depCache map[uint32][]tracestore.DependencyLink

	// seq numbers WriteTraces calls. It starts at the wall clock at Open,
	// so that chunks written after a restart sort after older ones (a
	// rewritten span's last write wins) as long as the clock does not step
	// back by more than the time since the previous write.
	seq atomic.Uint64
	// startKeysFrom is the first seq written with a start key.
	startKeysFrom uint64
	// runMu guards running: per bucket, the latest trace start written
	// (see runningLatest).
	runMu   sync.Mutex
	running map[uint32]uint64
	// newestFirstBatches is the constant of that name (tests lower it).
	newestFirstBatches int
	// writers recycles WriteTraces' encoding buffers.
	writers sync.Pool
	// gmu guards open (the group new callers join) and committing (a
	// group's batch is being written).
	gmu        sync.Mutex
	open       *group
	committing bool

	// retMu serialises retention passes.
	retMu sync.Mutex
	stop  chan struct{}
	done  chan struct{}
}

var _ tracestore.Store = (*Store)(nil)

// Open opens (or creates) the store in cfg.Dir and starts its retention
// loop. Close stops it.
func Open(cfg Config) (*Store, error) {
	cfg.defaults()
	if cfg.Dir == "" {
		return nil, errors.New("pebblestore: Dir is required")
	}
	// Pebble reserves the size of every live memtable (the active one and
	// the one kept for recycling, more while flushes lag) out of the block
	// cache: with a 128 MiB cache and 64 MiB memtables no block stayed
	// cached while writes ran. The cache is sized so that CacheBytes is
	// left for blocks.
	cache := pebble.NewCache(cfg.CacheBytes + 2*memTableSize)
	defer cache.Unref()
	opts := &pebble.Options{
		Cache:                       cache,
		MemTableSize:                memTableSize,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       24,
		Logger:                      quietLogger{cfg.Logger},
	}
	// zstd on every level: span chunks are most of the bytes and they reach
	// L6 only after hours, so the default (snappy above L5) would keep them
	// ~2x larger for most of their life.
	bs := cfg.blockSize
	if bs == 0 {
		bs = defaultBlockSize
	}
	for i := range opts.Levels {
		opts.Levels[i].BlockSize = bs
	}
	compression := cfg.compression
	if compression == nil {
		compression = func() pebble.DBCompressionSettings {
			return pebble.UniformDBCompressionSettings(block.ZstdCompression)
		}
	}
	opts.ApplyCompressionSettings(compression)
	var walSync *walSyncer
	if cfg.WALSyncInterval > 0 && !cfg.NoSync {
		walSync = newWALSyncer(cfg.WALSyncInterval, cfg.Logger)
		if cfg.walSyncFile != nil {
			walSync.syncFile = cfg.walSyncFile
		}
		opts.FS = walSyncFS{FS: vfs.Default, sy: walSync}
	}
	db, err := pebble.Open(cfg.Dir, opts)
	if err != nil {
		if walSync != nil {
			walSync.close()
		}
		return nil, fmt.Errorf("open trace store %s: %w", cfg.Dir, err)
	}
	closeDB := func() {
		db.Close()
		if walSync != nil {
			walSync.close()
		}
	}
	if err := checkFormat(db, cfg.Dir); err != nil {
		closeDB()
		return nil, err
	}
	s := &Store{
		cfg:                cfg,
		db:                 db,
		wo:                 pebble.Sync,
		walSync:            walSync,
		autoKey:            map[string]bool{},
		buckets:            map[uint32]struct{}{},
		meta:               map[string]uint32{},
		depCache:           map[uint32][]tracestore.DependencyLink{},
		running:            map[uint32]uint64{},
		newestFirstBatches: newestFirstBatches,
		stop:               make(chan struct{}),
		done:               make(chan struct{}),
	}
	if cfg.NoSync {
		s.wo = pebble.NoSync
	}
	s.seq.Store(uint64(time.Now().UnixNano()))
	if s.startKeysFrom, err = initStartKeys(db, s.seq.Load()+1); err != nil {
		closeDB()
		return nil, fmt.Errorf("trace store %s: %w", cfg.Dir, err)
	}
	for _, k := range cfg.AutocompleteKeys {
		s.autoKey[k] = true
	}
	s.m = newMetrics(cfg.Registerer, s)
	if err := s.loadBuckets(); err != nil {
		closeDB()
		return nil, err
	}
	if err := s.EnforceRetention(context.Background()); err != nil {
		cfg.Logger.Warn("trace store retention at open failed", "err", err)
	}
	go s.retentionLoop()
	return s, nil
}

// initStartKeys returns the first seq written with a start key, recording
// next as that seq when the store has none yet.
func initStartKeys(db *pebble.DB, next uint64) (uint64, error) {
	v, closer, err := db.Get(startKeysFrom)
	if err == nil {
		defer closer.Close()
		if len(v) != 8 {
			return 0, fmt.Errorf("start-key marker: %w", errBadValue)
		}
		return binary.BigEndian.Uint64(v), nil
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		return 0, fmt.Errorf("read start-key marker: %w", err)
	}
	if err := db.Set(startKeysFrom, appendU64(nil, next), pebble.Sync); err != nil {
		return 0, fmt.Errorf("write start-key marker: %w", err)
	}
	return next, nil
}

// checkFormat writes the format version into an empty database and
// rejects one written in another layout: reading it with this code would
// silently return nothing or garbage.
func checkFormat(db *pebble.DB, dir string) error {
	v, closer, err := db.Get([]byte{pfxFormat})
	if err == nil {
		defer closer.Close()
		if len(v) == 1 && v[0] == formatVersion {
			return nil
		}
		return fmt.Errorf("trace store %s has on-disk format %v, this meshlens reads format %d: "+
			"run the meshlens version that wrote it, or move the directory away (its traces are then lost) and restart", dir, v, formatVersion)
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("read trace store format of %s: %w", dir, err)
	}
	it, err := db.NewIter(nil)
	if err != nil {
		return err
	}
	empty := !it.First()
	if err := it.Close(); err != nil {
		return fmt.Errorf("read trace store %s: %w", dir, err)
	}
	if !empty {
		return fmt.Errorf("trace store %s was written by a meshlens before on-disk format %d (format 1, one key per span): "+
			"this version cannot read it; run the previous meshlens version to read it, or move the directory away "+
			"(its traces are then lost) and restart", dir, formatVersion)
	}
	if err := db.Set([]byte{pfxFormat}, []byte{formatVersion}, pebble.Sync); err != nil {
		return fmt.Errorf("write trace store format to %s: %w", dir, err)
	}
	return nil
}

type quietLogger struct{ l *slog.Logger }

func (q quietLogger) Infof(format string, args ...any) {}
func (q quietLogger) Errorf(format string, args ...any) {
	q.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}
func (q quietLogger) Fatalf(format string, args ...any) {
	q.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(fmt.Sprintf(format, args...))
}

func (s *Store) loadBuckets() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pfxBucket}, UpperBound: []byte{pfxBucket + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; {
		k := it.Key()
		if len(k) < 5 {
			ok = it.Next()
			continue
		}
		bkt := binary.BigEndian.Uint32(k[1:5])
		s.buckets[bkt] = struct{}{}
		if bkt == ^uint32(0) {
			break
		}
		ok = it.SeekGE(bucketPrefix(nil, bkt+1))
	}
	return it.Error()
}

// Capabilities implements tracestore.Store.
func (s *Store) Capabilities() tracestore.Capabilities {
	return tracestore.Capabilities{
		Durable:          !s.cfg.NoSync,
		TTL:              s.cfg.TTL,
		MaxLookback:      s.cfg.MaxLookback,
		MaxSpansPerTrace: s.cfg.MaxSpansPerTrace,
		AutocompleteKeys: slices.Clone(s.cfg.AutocompleteKeys),
	}
}

// Close stops retention and closes the database.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	s.retMu.Lock()
	defer s.retMu.Unlock()
	err := s.db.Close()
	if s.walSync != nil {
		// After Pebble: its Close writes and closes the last WAL.
		err = errors.Join(err, s.walSync.close())
	}
	return err
}

// DB exposes the Pebble handle for benchmarks and tests (disk metrics).
func (s *Store) DB() *pebble.DB { return s.db }

func (s *Store) bucketOf(ts uint64) uint32 {
	b := ts / uint64(s.cfg.BucketWidth)
	if b > uint64(^uint32(0)) {
		return ^uint32(0)
	}
	return uint32(b)
}

func (s *Store) bucketStart(b uint32) time.Time {
	return time.Unix(0, int64(b)*int64(s.cfg.BucketWidth))
}

// bucketsDesc lists the existing buckets in [lo, hi], newest first.
func (s *Store) bucketsDesc(lo, hi uint32) []uint32 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]uint32, 0, len(s.buckets))
	for b := range s.buckets {
		if b >= lo && b <= hi {
			out = append(out, b)
		}
	}
	slices.Sort(out)
	slices.Reverse(out)
	return out
}

func (s *Store) checkOpen() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return tracestore.ErrClosed
	}
	return nil
}

func (s *Store) scanMeta(prefix []byte, fn func(rest []byte)) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	oldest := s.oldestBucket()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v := it.Value()
		if len(v) == 4 && binary.BigEndian.Uint32(v) < oldest {
			continue
		}
		fn(it.Key()[len(prefix):])
	}
	return it.Error()
}

// GetServices implements tracestore.Reader.
func (s *Store) GetServices(context.Context) ([]string, error) {
	out := []string{}
	err := s.scanMeta([]byte{pfxMeta, metaService}, func(r []byte) { out = append(out, string(r)) })
	return out, err
}

// GetOperations implements tracestore.Reader.
func (s *Store) GetOperations(_ context.Context, service, kind string) ([]tracestore.Operation, error) {
	k, err := tracestore.ParseKind(kind)
	if err != nil {
		return nil, err
	}
	prefix := appendLP([]byte{pfxMeta, metaOp}, service)
	if kind != "" {
		prefix = append(prefix, byte(k))
	}
	var out []tracestore.Operation
	err = s.scanMeta(prefix, func(r []byte) {
		if kind == "" {
			if len(r) == 0 {
				return
			}
			out = append(out, tracestore.Operation{Name: string(r[1:]), SpanKind: tracestore.KindName(ptrace.SpanKind(r[0]))})
			return
		}
		out = append(out, tracestore.Operation{Name: string(r), SpanKind: kind})
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].SpanKind < out[j].SpanKind
	})
	if out == nil {
		out = []tracestore.Operation{}
	}
	return out, err
}

// GetRemoteServices implements tracestore.Reader.
func (s *Store) GetRemoteServices(_ context.Context, service string) ([]string, error) {
	out := []string{}
	err := s.scanMeta(appendLP([]byte{pfxMeta, metaRemote}, service), func(r []byte) { out = append(out, string(r)) })
	return out, err
}

// GetTagValues implements tracestore.Reader.
func (s *Store) GetTagValues(_ context.Context, key string) ([]string, error) {
	out := []string{}
	if !s.autoKey[key] {
		return out, nil
	}
	err := s.scanMeta(appendLP([]byte{pfxMeta, metaTag}, key), func(r []byte) { out = append(out, string(r)) })
	return out, err
}
