package demo

import (
	"context"
	"testing"
	"time"
)

func TestPregenerate(t *testing.T) {
	m := NewMesh(1, fixed(calm))
	logs := m.Pregenerate(300, 20)
	want := 0
	for _, r := range simulate(t, 1, calm, 300) {
		want += len(r.Entries)
	}
	got := 0
	for _, l := range logs {
		n := 0
		for _, msg := range l.Messages {
			if msg.Identifier != nil {
				t.Fatal("pre-generated message carries an identifier; Blast adds it per stream")
			}
			c := entryCount(msg)
			if c == 0 || c > 20 {
				t.Fatalf("message with %d entries, want 1..20", c)
			}
			if (msg.GetTcpLogs() != nil) != (l.Identifier.LogName == TCPLogName) {
				t.Fatal("entries of the wrong kind for the log name")
			}
			n += c
		}
		if n != l.Entries {
			t.Fatalf("log of %s says %d entries, has %d", l.Identifier.Node.Id, l.Entries, n)
		}
		got += n
	}
	if got != want {
		t.Fatalf("pre-generated %d entries, the same simulation logs %d", got, want)
	}
}

func TestBlast(t *testing.T) {
	als := &alsRecorder{}
	addr := startALS(t, als)
	logs := NewMesh(1, fixed(calm)).Pregenerate(200, 10)

	res, err := Blast(context.Background(), BlastConfig{Addr: addr, Conns: 2, Streams: 4, MaxMessages: 200, ChunkMessages: 10}, logs)
	if err != nil {
		t.Fatal(err)
	}
	// Workers share the budget, so the last chunks may be partial.
	if res.Messages != 200 || res.Chunks < 20 || res.Errors != 0 {
		t.Fatalf("result %v", res)
	}
	var msgs, entries uint64
	streams := als.snapshot()
	for _, s := range streams {
		for i, m := range s {
			if (i == 0) != (m.Identifier != nil) {
				t.Fatalf("message %d of a blast stream: identifier %v", i, m.Identifier != nil)
			}
			msgs++
			entries += uint64(entryCount(m))
		}
	}
	if msgs != res.Messages || entries != res.Entries || uint64(len(streams)) != res.Chunks {
		t.Fatalf("server got %d messages / %d entries on %d streams, result says %v", msgs, entries, len(streams), res)
	}
	if res.AckP50 <= 0 || res.AckP99 < res.AckP50 || res.AckMax < res.AckP99 {
		t.Fatalf("ack latencies not measured: %v", res)
	}
	t.Log(res)
}

func TestBlastRate(t *testing.T) {
	addr := startALS(t, &alsRecorder{})
	logs := NewMesh(1, fixed(calm)).Pregenerate(100, 10)
	res, err := Blast(context.Background(), BlastConfig{Addr: addr, Streams: 2, Rate: 200, Duration: 600 * time.Millisecond, ChunkMessages: 20}, logs)
	if err != nil {
		t.Fatal(err)
	}
	// 200 msg/s for 0.6 s; the last partial chunks are closed after ctx ends.
	if res.Messages < 80 || res.Messages > 160 {
		t.Fatalf("sent %d messages at 200/s for 600ms: %v", res.Messages, res)
	}
}

func TestBlastUnreachable(t *testing.T) {
	logs := NewMesh(1, fixed(calm)).Pregenerate(10, 10)
	_, err := Blast(context.Background(), BlastConfig{Addr: "127.0.0.1:1", Duration: 300 * time.Millisecond}, logs)
	if err == nil {
		t.Fatal("blast to a closed port reported success")
	}
	if _, err := Blast(context.Background(), BlastConfig{Addr: "127.0.0.1:1"}, nil); err == nil {
		t.Fatal("blast without messages reported success")
	}
}

// BenchmarkBlast measures the in-process ALS path end to end: pre-encoded
// messages over 4 streams to a recording server.
func BenchmarkBlast(b *testing.B) {
	b.ReportAllocs()
	addr := startALS(b, &discardALS{})
	logs := NewMesh(1, fixed(calm)).Pregenerate(500, 50)
	var last BlastResult
	for b.Loop() {
		res, err := Blast(context.Background(), BlastConfig{Addr: addr, Streams: 4, MaxMessages: 200, ChunkMessages: 50}, logs)
		if err != nil {
			b.Fatal(err)
		}
		last = res
	}
	b.ReportMetric(last.EntriesPerSecond, "entries/s")
	b.ReportMetric(float64(last.AckP99.Microseconds()), "ack-p99-µs")
}
