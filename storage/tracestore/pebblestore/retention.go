package pebblestore

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

func (s *Store) retentionLoop() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.EnforceRetention(context.Background()); err != nil {
				s.cfg.Logger.Warn("trace store retention failed", "err", err)
			}
		}
	}
}

// EnforceRetention drops the buckets older than the TTL, then, while the
// database is larger than MaxDiskBytes, the oldest remaining buckets (never
// the newest one), and prunes metadata nobody has reported within the TTL.
// Space is reclaimed by compacting each dropped range. It runs every
// RetentionInterval; tests call it directly.
func (s *Store) EnforceRetention(ctx context.Context) error {
	s.retMu.Lock()
	defer s.retMu.Unlock()
	oldest := s.oldestBucket()
	for _, b := range s.bucketsAsc() {
		if b >= oldest {
			break
		}
		if err := s.dropBucket(ctx, b); err != nil {
			return err
		}
		s.m.dropped.WithLabelValues("ttl").Inc()
		s.cfg.Logger.Info("trace store dropped expired bucket", "bucket_start", s.bucketStart(b))
	}
	if s.cfg.MaxDiskBytes > 0 {
		for {
			used := s.DiskUsage()
			bs := s.bucketsAsc()
			if used <= uint64(s.cfg.MaxDiskBytes) || len(bs) <= 1 {
				break
			}
			if err := s.dropBucket(ctx, bs[0]); err != nil {
				return err
			}
			s.m.dropped.WithLabelValues("size").Inc()
			s.cfg.Logger.Warn("trace store over size cap: dropped oldest bucket",
				"bucket_start", s.bucketStart(bs[0]), "disk_bytes", used, "cap", s.cfg.MaxDiskBytes)
		}
	}
	return s.pruneMeta(oldest)
}

// DiskUsage is the database's size as the size cap counts it: live
// sstables, blob files and WAL. Files already obsolete (deleted in the
// background after a drop) and WAL files kept for recycling are not
// counted, so that a drop is not followed by needless further drops.
func (s *Store) DiskUsage() uint64 {
	m := s.db.Metrics()
	return m.Table.Local.LiveSize + m.BlobFiles.Local.LiveSize + m.WAL.PhysicalSize
}

// TableBytes is the size of the live sstables (data after compression).
func (s *Store) TableBytes() uint64 {
	return s.db.Metrics().Table.Local.LiveSize
}

func (s *Store) bucketsAsc() []uint32 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]uint32, 0, len(s.buckets))
	for b := range s.buckets {
		out = append(out, b)
	}
	slices.Sort(out)
	return out
}

func (s *Store) dropBucket(ctx context.Context, b uint32) error {
	lo := bucketPrefix(nil, b)
	hi := prefixEnd(lo)
	if err := s.db.DeleteRange(lo, hi, pebble.Sync); err != nil {
		return fmt.Errorf("drop bucket %d: %w", b, err)
	}
	s.mu.Lock()
	delete(s.buckets, b)
	delete(s.depCache, b)
	epochLive := false
	for o := range s.buckets {
		if o/epochBuckets == b/epochBuckets {
			epochLive = true
		}
	}
	s.mu.Unlock()
	if err := s.db.Compact(ctx, lo, hi, false); err != nil {
		return fmt.Errorf("compact bucket %d: %w", b, err)
	}
	if epochLive {
		// Locators naming b stay until the epoch goes; lookups skip
		// buckets that no longer exist.
		return nil
	}
	elo := appendU32([]byte{pfxLocate}, b/epochBuckets)
	ehi := prefixEnd(elo)
	if err := s.db.DeleteRange(elo, ehi, pebble.Sync); err != nil {
		return fmt.Errorf("drop locators of epoch %d: %w", b/epochBuckets, err)
	}
	if err := s.db.Compact(ctx, elo, ehi, false); err != nil {
		return fmt.Errorf("compact locators of epoch %d: %w", b/epochBuckets, err)
	}
	return nil
}

// pruneMeta deletes service/operation/tag entries last seen before oldest.
func (s *Store) pruneMeta(oldest uint32) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pfxMeta}, UpperBound: []byte{pfxMeta + 1}})
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v := it.Value()
		if len(v) == 4 && binary.BigEndian.Uint32(v) < oldest {
			_ = b.Delete(it.Key(), nil)
			s.mu.Lock()
			delete(s.meta, string(it.Key()))
			s.mu.Unlock()
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	if b.Empty() {
		return nil
	}
	return b.Commit(pebble.NoSync)
}
