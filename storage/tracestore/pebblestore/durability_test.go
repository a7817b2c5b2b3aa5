package pebblestore

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

const (
	crashDirEnv = "MESHLENS_TRACESTORE_CRASH_DIR"
	// crashSyncEnv is the helper's Config.WALSyncInterval; empty is zero.
	crashSyncEnv = "MESHLENS_TRACESTORE_CRASH_WAL_SYNC"
)

func crashBatch(i int, base time.Time) ptrace.Traces {
	return tracestoretest.Build(
		tracestoretest.SpanSpec{Service: "crash", Trace: tracestoretest.TraceID(42, uint64(i+1)), ID: tracestoretest.SpanID(1),
			Name: "op", Kind: ptrace.SpanKindServer, Start: base, Duration: time.Millisecond, Attrs: map[string]any{"i": int64(i)}},
		tracestoretest.SpanSpec{Service: "crash", Trace: tracestoretest.TraceID(42, uint64(i+1)), ID: tracestoretest.SpanID(2), Parent: tracestoretest.SpanID(1),
			Name: "child", Kind: ptrace.SpanKindClient, Start: base, Duration: time.Millisecond},
	)
}

// TestCrashHelper is the child process of TestDurabilityKill9: it writes
// batches forever from several goroutines, printing "ACK i" after each write
// returns, until it is killed.
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process only")
	}
	cfg := Config{Dir: dir}
	if v := os.Getenv(crashSyncEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		cfg.WALSyncInterval = d
	}
	s, err := Open(cfg)
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	base := time.Now().Add(-time.Minute)
	acks := make(chan int, 64)
	const writers = 4
	for w := 0; w < writers; w++ {
		go func(w int) {
			for i := w; ; i += writers {
				if err := s.WriteTraces(context.Background(), crashBatch(i, base)); err != nil {
					fmt.Println("ERR", err)
					os.Exit(1)
				}
				acks <- i
			}
		}(w)
	}
	out := bufio.NewWriter(os.Stdout)
	for i := range acks {
		fmt.Fprintf(out, "ACK %d\n", i)
		out.Flush()
	}
}

// TestDurabilityKill9 kills a writing process with SIGKILL and checks that
// every batch it acknowledged is readable after reopening, with an fsync
// per commit and with the WAL fsynced in the background (an hour apart, so
// only the page cache holds what was acknowledged).
func TestDurabilityKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	for _, sync := range []string{"", "1h"} {
		t.Run("wal_sync="+sync, func(t *testing.T) { testDurabilityKill9(t, sync) })
	}
}

func testDurabilityKill9(t *testing.T, walSync string) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashSyncEnv+"="+walSync)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[int]bool{}
	sc := bufio.NewScanner(stdout)
	deadline := time.Now().Add(30 * time.Second)
	for sc.Scan() && len(acked) < 300 && time.Now().Before(deadline) {
		line := sc.Text()
		if n, ok := strings.CutPrefix(line, "ACK "); ok {
			i, _ := strconv.Atoi(n)
			acked[i] = true
		} else if strings.HasPrefix(line, "ERR") {
			t.Fatalf("helper: %s", line)
		}
	}
	// SIGKILL, no chance to flush or close anything.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(acked) < 300 {
		t.Fatalf("helper acknowledged only %d batches", len(acked))
	}
	s := openTest(t, Config{Dir: dir})
	missing := 0
	for i := range acked {
		tr, err := s.GetTrace(context.Background(), tracestoretest.TraceID(42, uint64(i+1)))
		if err != nil || tr.Spans.SpanCount() != 2 {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged batches lost after kill -9", missing, len(acked))
	}
	t.Logf("%d acknowledged batches all present after kill -9", len(acked))
}
