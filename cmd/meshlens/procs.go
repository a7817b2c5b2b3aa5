package main

import (
	"log/slog"
	"runtime"
)

// minProcs is the fewest Ps meshlens runs with. On one CPU (an affinity
// mask of one, as under taskset or a static CPU manager) Go's default is
// one P, and then a request handler that becomes runnable waits behind
// whatever holds that P: Pebble's flushes and compactions, which enter
// zstd through cgo, and blocking disk reads. With two Ps the kernel
// interleaves them and the request side runs as soon as it is woken. Go
// itself rounds a cgroup CPU quota below 2 up to 2 Ps for the same
// reason (runtime/cgroup_linux.go). Measured on one pinned core, OTLP
// synthetic100, two runs each, 2026-11-28: p99 at 22.7k spans/s 112 and
// 419 ms with one P, 14 and 23 ms with two; saturation (p99 < 100 ms)
// 18.2k and 28.4k with one P, 28.4k and 35.5k with two.
const minProcs = 2

// raiseProcs sets GOMAXPROCS to minProcs when the runtime chose fewer and
// the operator did not set GOMAXPROCS. procs is runtime.GOMAXPROCS.
func raiseProcs(getenv func(string) string, procs func(int) int, logger *slog.Logger) {
	if getenv("GOMAXPROCS") != "" {
		return
	}
	if n := procs(0); n < minProcs {
		procs(minProcs)
		logger.Info("running with 2 Ps on 1 CPU so request handling is not queued behind storage compactions; set GOMAXPROCS=1 to keep one",
			"gomaxprocs", minProcs, "cpus", runtime.NumCPU())
	}
}
