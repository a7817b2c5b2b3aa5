package pebblestore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

func markedBatch(name string) ptrace.Traces {
	return tracestoretest.Build(tracestoretest.SpanSpec{Service: "walsync", Trace: tracestoretest.TraceID(7, 7),
		ID: tracestoretest.SpanID(1), Name: name, Kind: ptrace.SpanKindServer, Start: time.Now(), Duration: time.Millisecond})
}

// walBytes is what the store's WAL files hold, read through the kernel
// (another file descriptor), as a restarted process would.
func walBytes(t *testing.T, dir string) []byte {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no WAL files in %s: %v", dir, err)
	}
	var all []byte
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// TestWALSyncAcknowledgesWrittenNotSynced: with a background interval the
// acknowledgement waits for the commit to be in the WAL file but for no
// fsync; Close fsyncs what is left.
func TestWALSyncAcknowledgesWrittenNotSynced(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir, WALSyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"first-marker-op", "second-marker-op"} {
		if err := s.WriteTraces(context.Background(), markedBatch(name)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(walBytes(t, dir), []byte(name)) {
			t.Fatalf("write %d acknowledged before its span reached the WAL file", i)
		}
	}
	if n := s.walSync.syncs.Load(); n != 0 {
		t.Fatalf("%d fsyncs on the acknowledgement path, want none before the interval", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.walSync.syncs.Load() == 0 {
		t.Fatal("Close left the WAL unsynced")
	}
}

// TestWALSyncInterval: the background loop fsyncs a written WAL within a
// few intervals and not while nothing was written.
func TestWALSyncInterval(t *testing.T) {
	s := openTest(t, Config{WALSyncInterval: 10 * time.Millisecond})
	time.Sleep(50 * time.Millisecond)
	idle := s.walSync.syncs.Load()
	if err := s.WriteTraces(context.Background(), markedBatch("op")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.walSync.syncs.Load() == idle {
		if time.Now().After(deadline) {
			t.Fatal("written WAL not fsynced within 5 s at a 10 ms interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	after := s.walSync.syncs.Load()
	time.Sleep(100 * time.Millisecond)
	if n := s.walSync.syncs.Load(); n != after {
		t.Fatalf("%d fsyncs while nothing was written", n-after)
	}
}

// TestWALSyncFailureRefusesWrites: after a background fsync fails, writes
// are refused with the fsync's error instead of being acknowledged into
// pages the kernel may have dropped.
func TestWALSyncFailureRefusesWrites(t *testing.T) {
	s := openTest(t, Config{WALSyncInterval: 10 * time.Millisecond,
		walSyncFile: func(vfs.File) error { return errors.New("injected EIO") }})
	if err := s.WriteTraces(context.Background(), markedBatch("op")); err != nil {
		t.Fatalf("first write, before any fsync: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.WriteTraces(context.Background(), markedBatch("op"))
		if err != nil {
			if !strings.Contains(err.Error(), "injected EIO") {
				t.Fatalf("error %q does not name the fsync failure", err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("writes still acknowledged 5 s after the WAL fsync failed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
