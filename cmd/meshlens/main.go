// Command meshlens is the meshlens server and its tools:
//
//	meshlens serve [--config meshlens.yaml] [--demo] [--<field> value ...]
//	meshlens collector --storage.remote_write... (scale-out, docs/scaleout.md)
//	meshlens query --storage.remote_read.url http://prometheus:9090/api/v1/read
//	meshlens demo --als 127.0.0.1:11800 --zipkin http://127.0.0.1:9411 --rate 20
//	meshlens cassandra migrate --hosts 127.0.0.1:9042 --keyspace meshlens
//	meshlens version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/meshlens/meshlens/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: meshlens <command> [flags]

commands:
  serve     run the server (receivers, storage, query APIs, UI)
  collector scale-out: receive and aggregate, remote-write the metrics with a
            collector label; no query APIs, no UI (docs/scaleout.md)
  query     scale-out: serve the query APIs and UI from the shared store
            (remote read; traces from Cassandra); receives nothing
  demo      send Bookinfo demo traffic to an Envoy ALS / Zipkin endpoint
  cassandra migrate   apply the Cassandra trace schema (deploy/cassandra)
  version   print the version

Run 'meshlens <command> -h' for the flags of a command.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, server.ModeAll, args[1:], stderr)
	case "collector":
		err = serve(ctx, server.ModeCollector, args[1:], stderr)
	case "query":
		err = serve(ctx, server.ModeQuery, args[1:], stderr)
	case "demo":
		err = demoCmd(ctx, args[1:], stderr)
	case "cassandra":
		err = cassandraCmd(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "meshlens", version())
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "meshlens: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "meshlens %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs meshlens in mode until ctx ends.
func serve(ctx context.Context, mode server.Mode, args []string, stderr io.Writer) error {
	cfg, flags, err := server.LoadModeConfig(mode, args, os.Environ(), stderr)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	raiseProcs(os.Getenv, runtime.GOMAXPROCS, logger)
	srv, err := server.New(ctx, cfg, flags, logger)
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		_ = srv.Shutdown(context.Background())
		return err
	}
	if mode == server.ModeCollector {
		logger.Info("meshlens is ready", "mode", mode, "metrics", srv.URL("/metrics"))
	} else {
		logger.Info("meshlens is ready", "mode", mode, "ui", srv.URL("/"), "prometheus", srv.URL("/api/v1/query"))
	}
	<-ctx.Done()
	logger.Info("shutting down: draining queues and flushing storage")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped cleanly")
	return nil
}

func version() string { return server.Version() }
