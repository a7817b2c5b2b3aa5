package pebblestore

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
)

// walCategory is the write category Pebble opens its write-ahead logs with
// (wal.StandaloneManager.Create); no other file of the store uses it.
const walCategory vfs.DiskWriteCategory = "pebble-wal"

// walSyncFS gives Pebble write-ahead-log files whose Sync returns as soon
// as Pebble has written the commit to the file: the commit is then in the
// kernel's page cache and survives the process being killed, as the TSDB
// WAL behind the metrics does. walSyncer fsyncs those files in the
// background, so a power loss or kernel crash loses at most the last
// interval (plus one fsync) of acknowledged spans.
//
// Why not fsync each commit: this VM's disk stalls an fsync for 100-480 ms
// a few times a minute with nothing else running (docs/tracestore.md), and
// every acknowledgement queued behind such a stall misses a 100 ms p99,
// whatever the core has left. Pebble's own NoSync is not the answer: it
// acknowledges before the commit leaves Pebble's buffer, so a kill -9 can
// lose it.
//
// Every other file (sstables, MANIFEST, directories) keeps Pebble's real
// syncs: the store's structure stays crash-consistent, only the WAL tail is
// bounded-loss on power failure.
type walSyncFS struct {
	vfs.FS
	sy *walSyncer
}

// Create implements vfs.FS.
func (fs walSyncFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.wrap(f, category, err)
}

// ReuseForWrite implements vfs.FS: Pebble recycles old WAL files this way.
func (fs walSyncFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(f, category, err)
}

func (fs walSyncFS) wrap(f vfs.File, category vfs.DiskWriteCategory, err error) (vfs.File, error) {
	if err != nil || category != walCategory {
		return f, err
	}
	return fs.sy.track(f), nil
}

// walSyncer fsyncs the open WAL files every interval and the closed ones
// once, off the commit path.
type walSyncer struct {
	interval time.Duration
	logger   *slog.Logger
	latency  prometheus.Histogram
	// syncFile is the real fsync; tests replace it to fail.
	syncFile func(vfs.File) error

	mu    sync.Mutex
	open  map[*walFile]struct{}
	err   error
	syncs atomic.Uint64 // fsyncs done, for tests
	// closing counts files handed over by Close and not yet synced and
	// closed.
	closing sync.WaitGroup
	stop    chan struct{}
	done    chan struct{}
}

func newWALSyncer(interval time.Duration, logger *slog.Logger) *walSyncer {
	sy := &walSyncer{
		interval: interval,
		logger:   logger,
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshlens_tracestore_wal_fsync_seconds",
			Help:    "Latency of the trace store's background write-ahead-log fsyncs (storage.traces.wal_sync_interval); acknowledgements do not wait for them.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		syncFile: vfs.File.SyncData,
		open:     map[*walFile]struct{}{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go sy.loop()
	return sy
}

func (sy *walSyncer) track(f vfs.File) *walFile {
	wf := &walFile{File: f, sy: sy}
	sy.mu.Lock()
	sy.open[wf] = struct{}{}
	sy.mu.Unlock()
	return wf
}

// failed is the first background fsync error. From then on the store
// refuses writes (Store.write checks it before and after each commit): the
// kernel may have dropped the pages it could not write, so what the store
// acknowledged would no longer reach the disk. The WAL file's Sync does not
// return it because Pebble treats a failed commit as fatal, and the
// process must not crash.
func (sy *walSyncer) failed() error {
	sy.mu.Lock()
	defer sy.mu.Unlock()
	return sy.err
}

func (sy *walSyncer) loop() {
	defer close(sy.done)
	t := time.NewTicker(sy.interval)
	defer t.Stop()
	for {
		select {
		case <-sy.stop:
			sy.syncOpen()
			return
		case <-t.C:
			sy.syncOpen()
		}
	}
}

func (sy *walSyncer) syncOpen() {
	sy.mu.Lock()
	files := make([]*walFile, 0, len(sy.open))
	for f := range sy.open {
		files = append(files, f)
	}
	sy.mu.Unlock()
	for _, f := range files {
		f.syncIfDirty()
	}
}

// record notes one fsync's outcome.
func (sy *walSyncer) record(start time.Time, err error) {
	sy.latency.Observe(time.Since(start).Seconds())
	sy.syncs.Add(1)
	if err != nil {
		sy.fail(err)
	}
}

func (sy *walSyncer) fail(err error) {
	sy.mu.Lock()
	defer sy.mu.Unlock()
	if sy.err == nil {
		sy.err = fmt.Errorf("trace store write-ahead log fsync: %w", err)
		sy.logger.Error("trace store WAL fsync failed; refusing further writes", "err", err)
	}
}

// close waits for the files Close handed over, then fsyncs the open ones a
// last time. Called after Pebble has closed.
func (sy *walSyncer) close() error {
	sy.closing.Wait()
	close(sy.stop)
	<-sy.done
	return sy.failed()
}

// walFile is one WAL file. Its Sync succeeds at once: Pebble calls it
// after writing the commit to the file.
type walFile struct {
	vfs.File
	sy *walSyncer
	// smu serialises fsyncs of this file with its Close.
	smu    sync.Mutex
	dirty  atomic.Bool
	closed bool
}

// Write implements vfs.File.
func (f *walFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.dirty.Store(true)
	return n, err
}

// WriteAt implements vfs.File.
func (f *walFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	f.dirty.Store(true)
	return n, err
}

// Sync implements vfs.File.
func (f *walFile) Sync() error { return nil }

// SyncData implements vfs.File.
func (f *walFile) SyncData() error { return nil }

// SyncTo implements vfs.File: the prefix is queued for the background
// fsync, which SyncTo's contract allows (fullSync false).
func (f *walFile) SyncTo(int64) (bool, error) { return false, nil }

// Close implements vfs.File. Pebble closes a WAL when it rotates to the
// next one, with commits waiting; the last fsync and the close happen in
// the background. The file stays needed until the memtable it backs is
// flushed, which Pebble does long after, with its own real syncs.
func (f *walFile) Close() error {
	sy := f.sy
	sy.mu.Lock()
	delete(sy.open, f)
	sy.closing.Add(1)
	sy.mu.Unlock()
	go func() {
		defer sy.closing.Done()
		f.syncIfDirty()
		f.smu.Lock()
		f.closed = true
		err := f.File.Close()
		f.smu.Unlock()
		if err != nil {
			sy.fail(err)
		}
	}()
	return nil
}

func (f *walFile) syncIfDirty() {
	f.smu.Lock()
	defer f.smu.Unlock()
	if f.closed || !f.dirty.Swap(false) {
		return
	}
	start := time.Now()
	f.sy.record(start, f.sy.syncFile(f.File))
}
